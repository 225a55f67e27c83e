"""The front ends over the job API (`vsrealbasicvsr.job`): the command line (`cli`), `compare`,
the web page (`web`) and Ray (`ray_runner`). A `.vpy` script is the other front end: it calls
`core.rbvsr.Upscale` (or `vsrealbasicvsr.upscale`) directly."""
