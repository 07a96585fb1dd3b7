"""The `--config` flag's file: a shipped config named by its checkout path found in an installed
package too (`packaged_config`), the file moved before its `--config.x=` overrides
(`config_first`), and one line for a path that is no config file or an override with no file
to belong to. `flag_parsing.parse` applies them before absl reads the command line."""

from __future__ import annotations

import os
import pathlib
import re

from absl import flags

from llp_jax import configs

DEFAULT_CONFIG = "llp_jax/configs/tiny.py:llp"  # (any config file has the same fields)


def packaged_config(argv: list[str]) -> list[str]:
    """`--config=llp_jax/configs/X.py[:arg]` names a file of the checkout; where it is not there
    (an installed llp_jax, run from any folder) it means the file inside the installed package."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = []
    for item in argv:
        match = re.match(r"^(--config=)(llp_jax/configs/[^:]+)(:.*)?$", item)
        if match and not os.path.exists(match.group(2)):
            path = os.path.join(package, match.group(2)[len("llp_jax/") :])
            item = match.group(1) + path + (match.group(3) or "")
        out.append(item)
    return out


def config_first(argv: list[str]) -> list[str]:
    """`--config=FILE` moved before its `--config.x=` overrides, and only the last `--config`
    kept (absl's rule for a repeated flag): ml_collections refuses overrides before the file
    ("Found --config.x in argv before a value for --config was specified") and, given two
    files and an override, failed with "The flag 'config.x' is defined twice"."""
    end = argv.index("--") if "--" in argv else len(argv)
    items, groups, i = argv[1:end], [], 0
    while i < len(items):  # `--config=FILE`, and `--config FILE`
        if re.match(r"^--?config(=|$)", items[i]):
            pair = items[i].lstrip("-") == "config" and i + 1 < len(items)
            groups.append([i, i + 1] if pair else [i])
            i = groups[-1][-1]
        i += 1
    if not groups:
        return argv
    dropped = {i for group in groups for i in group}
    rest = [a for i, a in enumerate(items) if i not in dropped]
    before = lambda k: sum(1 for i in range(k) if i not in dropped)  # noqa: E731  (its place in rest)
    overrides = [i for i, a in enumerate(items) if re.match(r"^--?(no)?config\.", a)]
    at = min([before(groups[-1][0]), *(before(i) for i in overrides[:1])])
    return argv[:1] + rest[:at] + [items[i] for i in groups[-1]] + rest[at:] + argv[end:]


def no_config_file(name: str, argv: list[str]) -> str:
    """An override of a config field where no --config names the file it belongs to."""
    if not name.startswith("config.") or any(a == "--config" or a.startswith("--config=")
                                             for a in argv):  # fmt: skip
        return ""
    workdir = next((a.split("=", 1)[1] for a in argv if a.startswith("--workdir=")), "")
    own = (f"; or the workdir's own, changed: --config=llp_jax/configs/from_workdir.py:{workdir}"
           if workdir and os.path.isdir(os.path.join(workdir, "checkpoints")) else "")  # fmt: skip
    return (
        f"--{name} sets a field of a config file, and no --config=FILE names one: add one, "
        f"e.g. --config={DEFAULT_CONFIG}{own}"
    )


def missing_config_file(argv: list[str]) -> str:
    """A `--config=PATH[:arg]` whose PATH is no file: what was meant, where it can be told (a
    shipped config's bare name, a workdir given as the config)."""
    files = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    if not files or "config" not in flags.FLAGS:
        return ""
    spec = files[-1]
    path, _, arg = spec.partition(":")
    if os.path.isfile(path):
        return ""
    name = os.path.basename(path.rstrip("/"))
    if os.path.isdir(os.path.join(path, "checkpoints")):
        fix = f"a workdir's own config is --config=llp_jax/configs/from_workdir.py:{path}"
    elif name.endswith(".py") and name in _shipped():
        fix = f"the shipped one is --config=llp_jax/configs/{name}" + (f":{arg}" if arg else "")
    else:
        names = ",".join(n[: -len(".py")] for n in _shipped())
        fix = f"one shipped is llp_jax/configs/{{{names}}}.py, e.g. --config={DEFAULT_CONFIG}"
    what = "is a folder, not" if os.path.isdir(path) else "does not exist; give"
    return f"--config={spec}: {path} {what} a config file (a .py with get_config()): {fix}"


def _shipped() -> list[str]:
    """The config files in llp_jax/configs (those defining get_config)."""
    folder = pathlib.Path(configs.PACKAGE_DIR)
    return sorted(
        path.name
        for path in folder.glob("*.py")
        if not path.name.startswith("_")
        and "def get_config(" in path.read_text(encoding="utf-8", errors="replace")
    )
