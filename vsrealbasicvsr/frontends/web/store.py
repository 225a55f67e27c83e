"""The server's jobs in SQLite (`<jobs>/jobs.sqlite3`): they outlive the page and the server.

One row per job; a job's files live in `<jobs>/<id>/` (its upload, its output, the job API's
work folder beside the output). States: new (uploaded or picked, not started), queued, running,
done, failed (`error` says why), cancelled. Frames done are written at each finished segment;
between them the runner holds the live count.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ...options import default

DB_NAME = "jobs.sqlite3"
# Columns held as JSON text.
JSON_COLUMNS = ("info", "request", "plan")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    name TEXT NOT NULL,             -- the input's name as the user gave it (shown, never a path)
    input TEXT NOT NULL,            -- absolute path of the input
    uploaded INTEGER NOT NULL,      -- 1: the input is the job's own upload, deleted with the job
    info TEXT NOT NULL,             -- JSON: the input's width, height, frames, fps
    request TEXT,                   -- JSON: the options the plan was made with (and the run uses)
    plan TEXT,                      -- JSON: the plan shown before starting
    device TEXT,                    -- the planned device: one running job per device
    state TEXT NOT NULL,
    error TEXT,
    queued REAL,                    -- when it was queued: the queue's order
    started REAL,
    finished REAL,
    run_seconds REAL,               -- time spent computing, over all runs (for time estimates)
    frames_done INTEGER NOT NULL DEFAULT 0,
    segments_done INTEGER NOT NULL DEFAULT 0,
    segment_count INTEGER NOT NULL DEFAULT 0
)
"""


def work(width: int, height: int, computed_frames: int) -> int:
    """The work of a job, in the unit of the speeds its estimates use: input pixels times the
    frames computed (context frames included)."""
    return width * height * computed_frames


def new_job_id() -> str:
    """A server-made job id: 16 hex digits, the only form the routes accept."""
    return secrets.token_hex(8)


class JobStore:
    """The jobs table, safe to use from the server's threads (one connection, one lock)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = threading.Lock()
        self._db = sqlite3.connect(folder / DB_NAME, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, job_id: str, name: str, input: Path, uploaded: bool, info: dict) -> dict:
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, created, name, input, uploaded, info, state) VALUES (?, ?, ?, ?, ?, ?, 'new')",
                (job_id, time.time(), name, str(input), int(uploaded), json.dumps(info)),
            )
        return self.get(job_id)

    def get(self, job_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _as_dict(row)

    def all(self) -> list[dict]:
        """Every job, the newest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY created DESC").fetchall()
        return [_as_dict(row) for row in rows]

    def in_state(self, state: str) -> list[dict]:
        """The jobs in `state`, in the queue's order (then by age)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE state = ? ORDER BY queued, created", (state,)).fetchall()
        return [_as_dict(row) for row in rows]

    def update(self, job_id: str, **values: Any) -> None:
        for name in values:
            if name not in _COLUMNS:
                raise KeyError(f"no column {name}")
        stored = {
            name: json.dumps(value) if name in JSON_COLUMNS and value is not None else value
            for name, value in values.items()
        }
        with self._lock:
            self._db.execute(
                f"UPDATE jobs SET {', '.join(f'{name} = ?' for name in stored)} WHERE id = ?",
                (*stored.values(), job_id),
            )

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def estimate(self, device: str, model: str, ray: bool, width: int, height: int, computed: int) -> dict | None:
        """{"seconds", "basis"}: how long a job of `computed` frames (context frames included) of
        width x height would take with `model` on `device`, from the jobs done there, or None when
        none was. Jobs of the same frame size first (the speed per pixel depends on it); others,
        scaled by their pixels, make a rough guess."""
        with self._lock:
            rows = self._db.execute(
                "SELECT info, request, plan, run_seconds FROM jobs WHERE state = 'done' AND device = ? "
                "AND run_seconds > 0 ORDER BY finished DESC LIMIT 50",
                (device,),
            ).fetchall()
        same, other = [], []
        for row in rows:
            info, request, plan = json.loads(row["info"]), json.loads(row["request"]), json.loads(row["plan"])
            if request["options"].get("model", default("model")) != model or bool(plan.get("ray")) != ray:
                continue
            frames = plan.get("computed_frames") or info["frames"]
            (same if (info["width"], info["height"]) == (width, height) else other).append(
                (work(info["width"], info["height"], frames), row["run_seconds"])
            )
        measured = same or other
        if not measured:
            return None
        speed = sum(done for done, _ in measured[:10]) / sum(seconds for _, seconds in measured[:10])
        where = "a Ray cluster" if ray else device
        count = min(10, len(measured))
        basis = (
            f"from {count} job(s) of {width}x{height} with {model} on {where}"
            if same
            else f"a rough guess: from {count} job(s) of other frame sizes with {model} on {where}"
        )
        return {"seconds": work(width, height, computed) / speed, "basis": basis, "sure": bool(same)}


_COLUMNS = {
    "name",
    "input",
    "uploaded",
    "info",
    "request",
    "plan",
    "device",
    "state",
    "error",
    "queued",
    "started",
    "finished",
    "run_seconds",
    "frames_done",
    "segments_done",
    "segment_count",
}


def _as_dict(row: sqlite3.Row | None) -> dict | None:
    if row is None:
        return None
    job = dict(row)
    for name in JSON_COLUMNS:
        if job[name] is not None:
            job[name] = json.loads(job[name])
    return job
