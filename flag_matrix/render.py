"""Rendering a combination: a snapshot of the template's working tree, and copier's ``run_copy`` on it.

The suite renders hundreds of trees in one process. Two costs of a render
repeat from one tree to the next without changing anything, and are avoided
through copier's and Jinja's public interfaces:

- Jinja compiles each template file afresh in each render (a new
  environment each time). The template is rendered from a copy whose
  ``copier.yml`` adds one Jinja extension (copier's ``_jinja_extensions``),
  `CompiledOnce`, which gives the environment a bytecode cache (Jinja's
  ``Environment.bytecode_cache``) held in memory: a file's code is compiled
  once per process and source. Jinja checks each source's checksum, and the
  code depends on nothing else but the environment's syntax options, which
  key the cache.
- After writing each file, copier asks git for the destination's
  ``core.fileMode``, a subprocess per file, when git is on ``PATH`` (copier
  fixes the git index of a destination that is a git repository). The
  matrix renders into fresh folders outside any repository, where that is
  a no-op, so copier runs with a ``PATH`` without git (plumbum's
  ``local.env``, the environment copier's commands see).

What is written is what ``copier copy --defaults --trust --skip-tasks``
writes, byte for byte (``tests/test_content_checks.py`` holds it).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from jinja2.bccache import Bucket, BytecodeCache

from flag_matrix.space import REPO

ANSWERS_FILE = ".copier-answers.yml"
EXTENSION = "flag_matrix.render.CompiledOnce"


def snapshot(dst: Path, repo: Path = REPO) -> Path:
    """Copy the template's working tree (tracked and new files, not ignored
    ones) to ``dst``, without ``.git``.

    Copier renders the latest tag of a git repository; a plain folder is
    rendered as it is, so the suite checks the work in progress, and no
    temporary commit ends up in ``.copier-answers.yml``.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = repo / name
        if source.is_file():
            target = dst / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dst


def render(template: Path, dst: Path, data: Mapping[str, object]) -> Path:
    """Render ``template`` into ``dst`` with ``data`` and the defaults, without running tasks.

    ``template`` is read once per process: render a template after it is complete.
    """
    from copier import run_copy
    from plumbum import local

    source = _compiled_once(template.resolve())
    with local.env(PATH=_path_without_git()):
        run_copy(str(source), dst, data=dict(data), defaults=True, unsafe=True, quiet=True, skip_tasks=True)
    # The answers name the template that was asked for, not the copy rendered.
    answers = dst / ANSWERS_FILE
    if answers.exists():
        text = answers.read_text(encoding="utf-8")
        answers.write_text(text.replace(f"\n_src_path: {source}\n", f"\n_src_path: {template}\n", 1), encoding="utf-8")
    return dst


@functools.cache
def _compiled_once(template: Path) -> Path:
    """A copy of ``template`` (without ``.git``) whose ``copier.yml`` loads `CompiledOnce`.

    The copy is in a temporary folder of its own, removed when the process exits.
    """
    config = template / "copier.yml"
    text = config.read_text(encoding="utf-8")
    if "_jinja_extensions" in text:
        return template  # the template's own extensions: rendered as it is
    folder = Path(tempfile.mkdtemp(prefix="compiled-once-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    copy = folder / template.name
    shutil.copytree(template, copy, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    (copy / "copier.yml").write_text(f"{text}\n_jinja_extensions:\n  - {EXTENSION}\n", encoding="utf-8")
    return copy


def _path_without_git() -> str:
    """``PATH`` without the folders that hold git."""
    folders = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(f for f in folders if f and not os.access(os.path.join(f, "git"), os.X_OK))


class InMemoryBytecodeCache(BytecodeCache):
    """Jinja's bytecode cache kept in this process's memory (code objects, not bytes)."""

    def __init__(self) -> None:
        """An empty cache."""
        self._code: dict[str, tuple[str, Any]] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        """Give ``bucket`` the code kept for its key, if it was compiled from the same source."""
        kept = self._code.get(bucket.key)
        if kept is not None and kept[0] == bucket.checksum:
            bucket.code = kept[1]

    def dump_bytecode(self, bucket: Bucket) -> None:
        """Keep ``bucket``'s code."""
        self._code[bucket.key] = (bucket.checksum, bucket.code)


# One cache per set of syntax options: compiled code depends on them.
_CACHES: dict[tuple[object, ...], InMemoryBytecodeCache] = {}


class CompiledOnce(jinja2.ext.Extension):
    """Gives the environment a bytecode cache shared by every environment with the same syntax options."""

    def __init__(self, environment: jinja2.Environment) -> None:
        """Set ``environment.bytecode_cache``."""
        super().__init__(environment)
        options = (
            type(environment),
            environment.block_start_string,
            environment.block_end_string,
            environment.variable_start_string,
            environment.variable_end_string,
            environment.comment_start_string,
            environment.comment_end_string,
            environment.line_statement_prefix,
            environment.line_comment_prefix,
            environment.trim_blocks,
            environment.lstrip_blocks,
            environment.newline_sequence,
            environment.keep_trailing_newline,
            environment.optimized,
            environment.autoescape if isinstance(environment.autoescape, bool) else id(environment.autoescape),
        )
        environment.bytecode_cache = _CACHES.setdefault(options, InMemoryBytecodeCache())
