"""``python -m edge run ...``: the agent without the rest of the ``pantau`` command."""

from edge.cli import app

app(prog_name="pantau edge")
