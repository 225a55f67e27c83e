"""The engine: windows of frames in, upscaled frames out (below the native filter).

- `engine`: the `Engine` that `core.rbvsr.Upscale` creates: the network loaded and placed on its
  device, windows run (tiles, out-of-memory retries, non-finite guard);
- `plan`, `memory`, `tiles`: what a run will do, sized without weights, a network or torch (the
  dry run's plan is the run's);
- `progress`: each job's work, counted as the network's steps run, and its cancel;
- `threads`: torch's and OpenMP's threads.

Nothing is imported here, so that planning does not load torch.
"""
