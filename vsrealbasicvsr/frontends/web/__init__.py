"""`vsrealbasicvsr serve`: a web page for upscale jobs, on the job API (docs/DESIGN.md, "The web page").

- `app`: the Starlette app (its routes, the jobs folder's `Server`) and `serve`; `guard`: the
  token and origin checks every request passes first
- `store`: the jobs in SQLite; `runner`: the queue, one running job per device
- `jobs`: what the page may ask and the job API's spec of a stored job; `preview`: the picture
- `static/`: the page (HTML, CSS, JS; no build step)
"""
