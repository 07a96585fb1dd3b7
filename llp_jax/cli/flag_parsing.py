"""The command line as absl reads it, with one-line errors: `--config=llp_jax/configs/X.py`
found in a checkout or an installed package (config_flag.py), a config file that does not load
(its syntax, its missing get_config, what it raises), a `--config.x.y=` override naming no
field, suggested by the section's own fields (`schema.hint`), and an integer flag given as a
float (`--config.train.num_steps=1e5`: told its integer)."""

from __future__ import annotations

import math
import os
import re
import sys

from absl import flags

from llp_jax import configs, errors, schema
from llp_jax.cli import config_flag


def parse(argv):
    """absl's flag parser, with one line for what it or a config file raises."""
    argv = config_flag.config_first(config_flag.packaged_config(argv))
    if why := config_flag.missing_config_file(argv):
        sys.exit(f"error: {why}")
    if sys.argv[1:] and sys.argv[0] == argv[0]:  # ml_collections reads the overrides there
        sys.argv[:] = argv
    try:
        return flags.FLAGS(argv)
    except flags.UnrecognizedFlagError as e:
        if "config" in flags.FLAGS and (why := config_flag.no_config_file(e.flagname, argv)):
            sys.exit(f"error: {why}")
        line = _own_suggestions(last_line(e))
        line += _kin(e.flagname, line, argv)
        if "id you mean" not in line and "a word of it" not in line:
            line += f" (--{e.flagname} is {where})" if (where := _elsewhere(e.flagname)) else ""
        sys.exit(f"error: {line}")
    except flags.Error as e:
        sys.exit(f"error: {_config_file_raised(e, argv) or _integer_hint(last_line(e))}")
    except Exception as e:  # noqa: BLE001  a config file's own error, raised while it loads
        sys.exit(f"error: {config_load_error(e, argv)}")


_FLAG_DEFINITION = re.compile(
    r"(?:DEFINE_\w+|output_flag|int_list_flag|count_flag)\(\s*\"(\w+)\"|(compilation_cache)_flag\(\)"
)


def _own_suggestions(line: str) -> str:
    """absl's "Did you mean: a, b ?" with only this program's flags: its own logging flags
    (--log_dir for --workdir) mislead."""
    match = re.search(r"\. Did you mean: (.*) \?$", line)
    if not match:
        return line
    ours = {flag.name for module, defined in flags.FLAGS.flags_by_module_dict().items()
            if module.startswith(("llp_jax.", "ml_collections.")) for flag in defined}  # fmt: skip
    kept = [n for n in match[1].split(", ") if n in ours]
    return line[: match.start()] + (f". Did you mean: {', '.join(kept)} ?" if kept else "")


def _elsewhere(name: str) -> str:
    """Where an unknown flag belongs to other llp_jax programs (evaluate's --protocols given to
    train, --workdir to prepare_data, whose absl suggestion was its own --log_dir): which."""
    here = os.path.dirname(os.path.abspath(__file__))
    running = {m.rsplit(".", 1)[1] for m in flags.FLAGS.flags_by_module_dict()
               if m.startswith("llp_jax.cli.")}  # fmt: skip
    owners = []
    for file in sorted(os.listdir(here)):
        program = file[: -len(".py")]
        if not file.endswith(".py") or program in running:
            continue
        source = open(os.path.join(here, file), encoding="utf-8").read()
        if "def entry(" in source and name in {a or b for a, b in _FLAG_DEFINITION.findall(source)}:
            owners.append(program)
    if not owners:
        return ""
    mine = [m for m in running if os.path.isfile(os.path.join(here, f"{m}.py")) and m != "common"]
    return (f"a flag of experiments.{', '.join(owners)}"
            + (f", not of experiments.{mine[0]}" if len(mine) == 1 else ""))  # fmt: skip


def _kin(name: str, message: str, argv: list[str]) -> str:
    """Where absl suggests nothing, the flags sharing a word with an unknown one: this program's
    own (`--num_tokens`: experiments.sample's `--max_new_tokens`), else its config's fields: the
    one of that name (`--corpus`: `--config.data.corpus`; `--model`: `--config.model.name`), or
    those sharing most words."""
    if "Did you mean" in message:
        return ""
    words = set(name.lower().split("_")) - {"num", "max", "min", "use", "no", "config"}
    ours = [flag.name for module, defined in flags.FLAGS.flags_by_module_dict().items()
            if module.startswith("llp_jax.") for flag in defined if flag.name != "config"]  # fmt: skip
    kin = sorted({n for n in ours if words & set(n.split("_"))})
    if not kin and "config" in flags.FLAGS:
        files = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
        fields = [
            f"config.{key}" for key in _leaves(files[-1] if files else config_flag.DEFAULT_CONFIG)
        ]
        named = _named(name, fields)
        if named:  # the field of that name, or of the name other codebases give it (--lr)
            return f"; did you mean {' or '.join('--' + f for f in named)}?"
        shared = {f: len(words & set(re.split(r"[_.]", f))) for f in fields}
        most = max(shared.values(), default=0)
        kin = sorted(f for f, n in shared.items() if most and n == most)[:4]
    return f"; flags with a word of it: {', '.join('--' + k for k in kin)}" if kin else ""


def _named(name: str, fields: list[str]) -> list[str]:
    """The dotted config fields called `name`, or what other codebases call so (`--lr`:
    train.learning_rate; `schema.SYNONYMS`), or the section it names (`--model`: model.name)."""
    alias = schema.synonym(name)
    return sorted(f for f in fields if f.rsplit(".", 1)[-1] in (name, alias)
                  or f == f"config.{name}.name")[:4]  # fmt: skip


def _leaves(spec: str) -> list[str]:
    """The dotted names of a config file's fields (none where it does not load)."""
    try:
        config = configs.load(spec).to_dict()
    except Exception:  # noqa: BLE001  only a hint
        return []
    out, todo = [], [("", config)]
    while todo:
        prefix, section = todo.pop()
        for key, value in section.items():
            if isinstance(value, dict):
                todo.append((f"{prefix}{key}.", value))
            else:
                out.append(prefix + key)
    return out


def _config_file_raised(error: Exception, argv: list[str]) -> str:
    """What a config file's get_config raised, which ml_collections re-raises as its type with a
    traceback for a message ("Error whilst parsing config file: Traceback ...", or, where that
    type cannot be made from a message, "JSONDecodeError.__init__() missing 2 required
    positional arguments"), in one line: an llp_jax error (from_workdir.py:WORKDIR without a
    checkpoint) as its own message, any other as `config_load_error` says it."""
    if not str(error).startswith("flag --config="):
        return ""
    root = error
    while root.__context__ is not None:
        root = root.__context__
    if root is error:
        return ""
    return last_line(root) if isinstance(root, errors.LLPError) else config_load_error(root, argv)


def config_load_error(error: Exception, argv: list[str]) -> str:
    """One line for a config file that does not load, or an override it has no field for."""
    files = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    where = f"--config={files[-1]}" if files else "--config"
    if isinstance(error, SyntaxError):
        return f"{where}: {error.msg} at line {error.lineno} of {error.filename}"
    text = str(error)
    if isinstance(error, AttributeError) and "get_config" in text:
        return (
            f"{where} defines no get_config(); a config file needs `def get_config(arg=None)` "
            "returning a ConfigDict (see llp_jax/configs/tiny.py)"
        )
    if isinstance(error, TypeError) and files:
        path, _, arg = files[-1].partition(":")
        if line := configs.arity_error(error, configs.resolve_path(path), arg):
            return line
    key = re.search(r"\\?'(\w+)\\?'", text)
    override = [
        a.split("=", 1)[0]
        for a in argv
        if a.startswith("--config.") and key and key[1] in a.split("=", 1)[0].split(".")[1:]
    ]
    spec = files[-1] if files else None
    for flag in override:  # the one naming no field (--config.train.batch_size=4 is one)
        parts = flag[len("--") :].split(".")
        section = ".".join(parts[: parts.index(key[1])])
        fields = _section_fields(spec, section.split(".")[1:])
        if fields is None or key[1] not in fields:
            return f"{flag}: {section} has no field {key[1]!r}{_hint(key[1], section, fields, spec, text)}"
    return f"{where}: loading it raised {type(error).__name__}: {last_line(error)}"


def _hint(name: str, section: str, fields: list[str] | None, spec: str | None, text: str) -> str:
    """What a `section` without the field `name` suggests: its own field of that meaning, another
    section's field of that name (--config.data.batch_size: train.batch_size), or one spelt like
    it; where the file does not load by itself, ml_collections' own suggestion, if any."""
    if fields is None:
        mean = re.search(r'Did you mean \\?"(\w+)\\?"', text)
        return f"; did you mean {mean[1]!r}?" if mean else ""
    leaves = [f"config.{leaf}" for leaf in _leaves(spec or config_flag.DEFAULT_CONFIG)]
    elsewhere = [f for f in _named(name, leaves) if not f.startswith(f"{section}.")]
    if elsewhere and schema.synonym(name) not in fields:
        note = schema.NOTES.get(elsewhere[0].rsplit(".", 1)[-1], "")
        return f"; did you mean {' or '.join('--' + f for f in elsewhere)}{note}?"
    return schema.hint(name, fields)


def _section_fields(spec: str | None, path: list[str]) -> list[str] | None:
    """The field names of `config.<path>` in the config file `spec`, or None where it does not
    load or has no such section (then the caller's message goes without them)."""
    try:
        section = configs.load(spec)
        for part in path:
            section = section[part]
        return list(section.keys())
    except Exception:  # noqa: BLE001  only a hint: any failure means no hint
        return None


_NOT_AN_INT = re.compile(r"^flag (--[\w.]+)=(\S*): invalid literal for int\(\) with base 10: .*$")


def _integer_hint(line: str) -> str:
    """Python's "invalid literal for int()" said as what the field takes: `num_steps=1e5` is
    100000, written out."""
    if not (match := _NOT_AN_INT.match(line)):
        return line
    try:
        number = float(match[2])
    except ValueError:
        number = math.nan
    fix = f"{match[1]}={int(number)}" if number.is_integer() else "a whole number"
    return f"flag {match[1]}={match[2]}: takes an integer; give {fix}"


def last_line(error: Exception) -> str:
    """The exception line of a message that may embed a traceback, without the module path."""
    lines = [x.strip() for x in str(error).splitlines()]
    line = next((x for x in reversed(lines) if re.search(r"\w", x)), "") or repr(error)
    if "Traceback (most recent call last)" in line:  # a traceback flattened into one line
        raised = list(re.finditer(r"\b(?:[A-Za-z_]\w*\.)*(\w+(?:Error|Exception)): ", line))
        if raised:
            line = raised[-1][1] + ": " + line[raised[-1].end() :]
    return re.sub(r"^[\w.]+\.(\w+): ", r"\1: ", line)
