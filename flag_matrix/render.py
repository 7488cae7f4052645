"""Rendering a combination: a snapshot of the template's working tree, and copier's ``run_copy`` on it.

The suite renders hundreds of trees in one process. Two costs of a render
repeat from one tree to the next without changing anything, and are avoided
through copier's and Jinja's public interfaces:

- Jinja compiles each template file, and each string copier renders with
  ``Environment.from_string`` (each part of each path, the questions'
  defaults), afresh in each render: a new environment each time, and
  ``from_string`` caches nothing. The template is rendered from a copy whose
  ``copier.yml`` adds one Jinja extension (copier's ``_jinja_extensions``),
  `CompiledOnce`, which gives the environment a bytecode cache (Jinja's
  ``Environment.bytecode_cache``) held in memory, and a ``from_string`` that
  does what Jinja's does (``Template.from_code`` on ``Environment.compile``'s
  code) with the code of a string compiled once, after the extensions'
  ``preprocess`` hooks as a compile runs them. Compiled code depends on
  the source and the environment's options (its syntax, its extensions, its
  finalize), which key the caches, and on which of its filters and tests
  take the context or the environment, the same in every environment
  copier makes; the filters, tests and globals themselves are looked up
  when a template is loaded from the code.
- After writing each file, copier looks for git on ``PATH`` (copier fixes
  the git index of a destination that is a git repository): a search of
  every folder on it, per file. The matrix renders into fresh folders
  outside any repository, where that is a no-op, so copier runs with a
  ``PATH`` of one empty folder (plumbum's ``local.env``, the environment
  copier's commands see); rendering with ``--skip-tasks`` runs no command.

What is written is what ``copier copy --defaults --trust --skip-tasks``
writes, byte for byte (``tests/test_content_checks.py`` holds it).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from types import CodeType
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
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
    with local.env(PATH=_empty_folder()):
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


@functools.cache
def _empty_folder() -> str:
    """A folder with nothing in it, removed when the process exits: a ``PATH`` where no command is found."""
    folder = tempfile.mkdtemp(prefix="empty-path-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


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


def _options(environment: jinja2.Environment) -> tuple[object, ...]:
    """What an environment's compiled code depends on, besides the source."""
    return (
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
        # The callables themselves, not their ids: a key keeps its callable
        # alive, so no later one can take its id.
        environment.autoescape,
        environment.finalize,
        tuple(sorted(environment.extensions)),
    )


# One cache of each kind per set of options: compiled code depends on them.
_CACHES: dict[tuple[object, ...], InMemoryBytecodeCache] = {}
_STRINGS: dict[tuple[object, ...], dict[str, CodeType]] = {}


class CompiledOnce(jinja2.ext.Extension):
    """Compiles each template file and each string once per process and set of environment options.

    Every environment that loads it shares, with those of the same options,
    a bytecode cache for the files and a cache of code for ``from_string``.
    """

    def __init__(self, environment: jinja2.Environment) -> None:
        """Give ``environment`` its bytecode cache and its ``from_string``."""
        super().__init__(environment)
        cache = _EnvironmentCache(environment)
        environment.bytecode_cache = cache
        # An attribute of this environment only, in place of Jinja's
        # `Environment.from_string`, which does the same but compile anew.
        environment.from_string = cache.from_string  # type: ignore[method-assign]


class _EnvironmentCache(BytecodeCache):
    """One environment's view of the caches of its options."""

    def __init__(self, environment: jinja2.Environment) -> None:
        self._environment = environment

    @functools.cached_property
    def _files(self) -> InMemoryBytecodeCache:
        # Read when the first template is compiled, once every extension
        # of the environment is loaded.
        return _CACHES.setdefault(_options(self._environment), InMemoryBytecodeCache())

    @functools.cached_property
    def _strings(self) -> dict[str, CodeType]:
        return _STRINGS.setdefault(_options(self._environment), {})

    def load_bytecode(self, bucket: Bucket) -> None:
        self._files.load_bytecode(bucket)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._files.dump_bytecode(bucket)

    def from_string(
        self,
        source: str | jinja2.nodes.Template,
        globals: MutableMapping[str, Any] | None = None,
        template_class: type[jinja2.Template] | None = None,
    ) -> jinja2.Template:
        """What ``Environment.from_string`` does, with the code of each source string compiled once."""
        environment = self._environment
        if isinstance(source, str):
            code = self._strings.get(source)
            if code is None:
                code = self._strings[source] = environment.compile(source)
            else:
                # What compiling would have done first: the extensions'
                # preprocess hooks (copier's yield tag resets its state there).
                environment.preprocess(source)
        else:
            code = environment.compile(source)
        cls = template_class or environment.template_class
        return cls.from_code(environment, code, environment.make_globals(globals), None)
