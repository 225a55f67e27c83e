"""The engine: windows of frames in, upscaled frames out (below the native filter).

- `engine`: the `Engine` that `core.rbvsr.Upscale` creates, its device thread, precision, tiles and
  out-of-memory recovery;
- `plan`, `memory`, `tiles`: what a run will do, sized without weights or a network (the dry run's
  plan is the run's);
- `threads`: torch's and OpenMP's threads.

Nothing is imported here, so that planning does not load torch.
"""
