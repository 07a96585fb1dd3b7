"""Which files a corpus spec names: files, folders walked recursively, globs, URLs, '-'.

Each file is read once, however many paths reach it. A folder walk follows symbolic links (a
corpus folder is often links to books kept elsewhere; `os.walk` alone skipped them) but never
goes round a loop (`ln -s .. up`), and `**` is matched on that same walk: Python's glob follows
a loop until the path is too long, so one such link made 41 copies of every file below it (the
validation documents copies of training ones) and two made 2^40 paths. A file named twice
(`a.txt,a.txt`, a folder and a file in it, a link and its target) is read once, said in one
line.

A walk leaves out llp_jax workdirs (`run_folders`): a run's output, not text.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Sequence

from llp_jax import paths
from llp_jax.data import run_folders
from llp_jax.data.corpus import DataError
from llp_jax.data.remote_corpus import GLOB, expand_url, hidden

STDIN = "-"  # `experiments.evaluate --text=-`


def parts(spec: str | Sequence[str]) -> list[str]:
    """The paths of a spec: a list, or a string of comma-separated paths (a name that exists as
    given is one path, commas and all), '~' expanded."""
    if not isinstance(spec, str):
        return [os.path.expanduser(os.fspath(p)) for p in spec]
    if os.path.exists(os.path.expanduser(spec.strip())):  # one name, commas and all
        return [os.path.expanduser(spec.strip())]
    return [os.path.expanduser(p.strip()) for p in spec.split(",") if p.strip()]


def expand_paths(spec: str | Sequence[str], *, stdin: bool = False) -> tuple[list[str], set[str]]:
    """The files a corpus spec names, in order (folders walked recursively, sorted; globs
    sorted), each once, and which of them were found by a walk or a glob rather than named;
    with `stdin`, '-' names standard input.

    Raises:
      DataError: an empty spec, a missing path, or a folder / glob without any file.
    """
    given = parts(spec)
    if not given:
        raise DataError("Empty corpus specification; pass 'austen' or text files or folders.")
    files: list[str] = []
    found: set[str] = set()
    run_folders.say_left_out(quiet=True)  # none left from a walk that raised
    for part in given:
        if stdin and part == STDIN:
            files.append(part)
        elif paths.is_url(part):
            named, walked = expand_url(part)
            files += named
            found.update(walked)
        elif os.path.isdir(part):
            if run_folders.is_workdir(part):
                raise DataError(f"Corpus folder {part} is an llp_jax workdir (a run's checkpoints "
                                "and logs), not text; name the text's own file or folder.")  # fmt: skip
            walk = [path for path, rel in _walk(part, hidden_too=False) if not hidden(rel)]
            if not walk:
                raise DataError(f"Corpus folder {part} holds no files; add some or pass files.")
            files += walk
            found.update(walk)
        elif os.path.exists(part):
            files.append(part)
        elif GLOB.search(part):
            matches = _glob(part)
            if not matches:
                raise DataError(f"Corpus pattern {part!r} matches no files.")
            files += matches
            found.update(matches)
        else:
            raise no_such(part)
    files = _once(files)
    run_folders.say_left_out()
    return files, found & set(files)


def no_such(path: str) -> DataError:
    """A local corpus path `os.path.exists` denies: missing, or behind a folder this user may
    not enter (paths.missing)."""
    if path == STDIN:
        return DataError(
            "Corpus path '-' (standard input) can be evaluated (--text=-) but not trained on: a "
            "resumed run reads its corpus again; save the text to a file first (cmd > text.txt)."
        )
    why = paths.missing(path)
    fix = "pass an existing file or folder" if why == "does not exist" else "make it readable"
    return DataError(f"Corpus path {path} {why}; {fix}.")


def _walk(root: str, *, hidden_too: bool) -> list[tuple[str, str]]:
    """(path, path relative to root) of every file below `root`, sorted, through symbolic
    links, each folder entered once (a link back up the tree is not followed round); folders
    whose name starts with '.' (.git/) are not entered unless `hidden_too`. A folder it may
    not list is a DataError."""
    entered: set[str] = set()
    out = []
    for folder, dirs, names in os.walk(root, onerror=_unreadable, followlinks=True):
        real = os.path.realpath(folder)
        if real in entered:
            dirs[:] = []
            continue
        entered.add(real)
        if folder != root and run_folders.is_workdir(folder):
            dirs[:] = []
            run_folders.note([folder])
            continue
        # Sorted, so a folder reached by a link and by its own name is always kept under the
        # same one (the documents' order, and so the split, do not depend on listing order).
        dirs[:] = sorted(d for d in dirs if hidden_too or not d.startswith("."))
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path):  # not a broken link, a pipe or a socket
                out.append((path, os.path.relpath(path, root)))
    return sorted(out)


def _unreadable(error: OSError) -> None:
    """A folder of a walk this user may not list: one line, as for a file it may not read
    (os.walk left it out silently, and its documents with it)."""
    why = (error.strerror or type(error).__name__).lower()
    raise DataError(f"Corpus folder {error.filename} cannot be read ({why}); make it readable "
                    "or leave it out of the corpus.")  # fmt: skip


def _glob(pattern: str) -> list[str]:
    """The files `pattern` matches, sorted, as glob.glob(recursive=True) matches them (`*`, `?`,
    `[..]` within a name, `**` any folders, names starting with '.' only by a pattern that
    does), with `**` matched on a loop-safe walk."""
    if "**" not in pattern:
        return sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    components = pattern.split(os.sep)
    fixed = next(i for i, c in enumerate(components) if GLOB.search(c))
    root = os.sep.join(components[:fixed]) or (os.sep if pattern.startswith(os.sep) else ".")
    if not os.path.isdir(root):
        return []
    rest = components[fixed:]
    walk = _walk(root, hidden_too=any(c.startswith(".") for c in rest))
    found = [path for path, rel in walk if _match(rest, rel.split(os.sep))]
    return sorted(path if components[:fixed] else os.path.normpath(path) for path in found)


def _match(pattern: list[str], names: list[str]) -> bool:
    if not pattern:
        return not names
    head, tail = pattern[0], pattern[1:]
    if head == "**":  # zero or more folders, none of them hidden
        return any(_match(tail, names[i:]) for i in range(len(names) + 1)
                   if not any(n.startswith(".") for n in names[:i]))  # fmt: skip
    return (bool(names) and (head.startswith(".") or not names[0].startswith("."))
            and fnmatch.fnmatchcase(names[0], head) and _match(tail, names[1:]))  # fmt: skip


def _once(files: list[str]) -> list[str]:
    """`files` without a second path to the same file (by its real path; URLs by name)."""
    kept, first_of, again = [], {}, set()
    for path in files:
        key = path if path == STDIN or paths.is_url(path) else os.path.realpath(path)
        if key in first_of:
            again.add(key)
            continue
        first_of[key] = path
        kept.append(path)
    if again:
        example = first_of[sorted(again)[0]]
        print(f"[llp_jax.data] read {len(again)} file(s) once that the corpus names by more than "
              f"one path (symbolic links or overlapping names), e.g. {example}")  # fmt: skip
    return kept
