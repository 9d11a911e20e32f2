"""What every MONAI bundle of diffrecon shares: where bundles are found, and the checks a bundle run makes
before any work.

Bundles live in ``bundles/`` of the repository, which the package ships as ``diffrecon/bundles`` (package
data), so a non-editable install finds them too; ``$DIFFRECON_BUNDLES`` names other folders of bundles (e.g.
copies fine-tuned on a site's images), searched first.

Every bundle config starts its ``initialize`` with ``$diffrecon.bundle.guard_run(@output_dir)``. Through
``python -m monai.bundle run``, MONAI applies every ``--name value`` to the config and adds the names it does
not know, so a misspelt setting would be ignored silently; and an :class:`InputError` raised in a config item
reaches the user as a long traceback ending in "Failed to evaluate ConfigExpression". The guard refuses
command-line settings that are neither keys of the config files nor MONAI's own arguments, prints bad input
as one line ``error: <message>`` with exit status 2 (as the ``diffrecon`` command does), and checks that the
output folder can be written before the work starts.
"""
from __future__ import annotations

import difflib
import inspect
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from diffrecon.checks import InputError, check_file, check_output_dir

BUNDLES_ENV = "DIFFRECON_BUNDLES"
PACKAGED_BUNDLES = Path(__file__).parent / "bundles"


def bundle_roots() -> list[Path]:
    """Folders searched for bundles by name, in order: those in ``$DIFFRECON_BUNDLES`` (``os.pathsep``
    separated), then the bundles shipped with the package."""
    listed = [Path(p) for p in os.environ.get(BUNDLES_ENV, "").split(os.pathsep) if p]
    return [*listed, PACKAGED_BUNDLES]


def bundle_path(bundle: str | Path) -> Path:
    """The folder of ``bundle``: a path to a bundle folder, or the name of one under :func:`bundle_roots`.

    Raises:
        InputError: no bundle folder (one with ``configs/``) of that path or name.
    """
    candidates = [Path(bundle)] if Path(bundle).is_dir() else [root / str(bundle) for root in bundle_roots()]
    for folder in candidates:
        if (folder / "configs").is_dir():
            return folder
    found = sorted({p.parent.name for root in bundle_roots() for p in root.glob("*/configs")})
    raise InputError(f"bundle {str(bundle)!r}: no bundle folder (one with configs/) there or under "
                     f"{', '.join(map(str, bundle_roots()))}; bundles found: {', '.join(found) or 'none'}")


COMMON_INFERENCE = {"PT": "pet_inference.json", "MR": "mri_inference.json"}


def inference_configs(bundle: str | Path) -> list[Path]:
    """The config files of a bundle's inference run, in order: a method bundle (one whose ``inference.json``
    names a registered ``method_name`` and holds only its method block and defaults, no ``imports``) runs on its
    modality's shared config in ``bundles/common/`` with its own file after it; any other bundle (a prior, or a
    whole run in one file such as pet_classical and pet_personalised) on its own ``inference.json``."""
    import json

    from diffrecon.methods.registry import METHODS

    own = bundle_path(bundle) / "configs" / "inference.json"
    content = json.loads(own.read_text()) if own.is_file() else {}
    name = content.get("method_name")
    if name is None or "imports" in content:
        return [own]
    if name not in METHODS:
        raise InputError(f"bundle {str(bundle)!r} names method_name {name!r}; expected one of {', '.join(METHODS)}")
    return [PACKAGED_BUNDLES / "common" / COMMON_INFERENCE[METHODS[name].modality], own]


def bundle_config(bundle: str | Path, config: str = "inference.json", **settings: object):
    """A bundle's config (``monai.bundle.ConfigParser``) with ``bundle_root`` set and ``settings`` applied as on
    the command line (refused when they set nothing, like misspelt names); ``inference.json`` with the shared
    config it runs on (:func:`inference_configs`).

    Raises:
        InputError: no such bundle or config file, or an unknown setting.
    """
    from monai.bundle import ConfigParser

    root = bundle_path(bundle)
    files = inference_configs(root) if config == "inference.json" else [root / "configs" / config]
    parser = ConfigParser()
    parser.read_config([str(check_file(f"bundle {str(bundle)!r} config", path)) for path in files])
    check_settings(parser, settings)
    parser.update({"bundle_root": str(root), **settings})
    return parser


# settings whose default is an expression, shown as written (where the outputs go, which device runs)
EXPRESSION_SETTINGS = ("output_dir", "device")
DEFAULTS_BEGIN = "<!-- defaults: written by scripts/bundle_defaults.py from the configs; do not edit by hand -->"
DEFAULTS_END = "<!-- end of defaults -->"


def _literal(value: object) -> bool:
    """Whether a config value is plain JSON (no expression, reference or component)."""
    if isinstance(value, str):
        return not value.startswith(("$", "@", "%"))
    if isinstance(value, list):
        return all(map(_literal, value))
    if isinstance(value, dict):
        return "_target_" not in value and all(map(_literal, value.values()))
    return True


def setting_defaults(bundle: str | Path) -> dict[str, object]:
    """The settings of a bundle's inference run (every top-level key of its config files, the shared one first, that
    a user can set on the command line: plain JSON values, and ``output_dir`` and ``device`` as written) with their
    defaults, in file order; ``bundle_root``, the wiring (imports, components, expressions) and the ``method_name``
    of a method bundle (which names the bundle's method) are left out."""
    import json

    files = inference_configs(bundle)
    defaults: dict[str, object] = {}
    for path in files:
        for key, value in json.loads(path.read_text()).items():
            if key in ("bundle_root", "imports") or (key == "method_name" and len(files) > 1):
                continue
            if _literal(value) or (key in EXPRESSION_SETTINGS and isinstance(value, str)):
                defaults.pop(key, None)  # a bundle's own value replaces the shared one, in the bundle file's order
                defaults[key] = value
    return defaults


def defaults_section(bundle: str | Path) -> str:
    """The defaults block of a bundle's README: one table row per :func:`setting_defaults` entry, the value as it
    is written in the config (JSON; an expression as its text), between the markers the check finds it by."""
    import json

    rows = [f"| `{key}` | `{value if isinstance(value, str) and value.startswith('$') else json.dumps(value)}` |"
            for key, value in setting_defaults(bundle).items()]
    root = bundle_path(bundle).resolve()
    files = ", ".join(f"`{path.resolve().relative_to(root)}`" if path.resolve().is_relative_to(root) else
                      f"`../{path.parent.name}/{path.name}`" for path in inference_configs(bundle))
    return "\n".join([DEFAULTS_BEGIN, "", f"Every setting of the inference run ({files}) with its default; change any "
                      "with `--name value`:", "", "| setting | default |", "|---|---|", *rows, "", DEFAULTS_END])


def monai_arguments() -> set[str]:
    """Names that ``python -m monai.bundle run`` takes for itself (config_file, meta_file, run_id, ...)
    rather than as config settings."""
    from monai.bundle import ConfigWorkflow
    from monai.bundle.scripts import create_workflow, run

    names = set()
    for function in (run, create_workflow, ConfigWorkflow.__init__):
        names |= {p.name for p in inspect.signature(function).parameters.values()
                  if p.kind is not inspect.Parameter.VAR_KEYWORD and p.name != "self"}
    return names


def _is_flag(token: str) -> bool:
    """A command-line token that names a setting: starts with '-' and is not a negative number."""
    if not token.startswith("-"):
        return False
    try:
        float(token)
    except ValueError:
        return True
    return False


def command_line_settings(argv: Sequence[str]) -> dict[str, str | bool]:
    """The ``--name value``, ``--name=value`` and ``--flag`` settings of a ``python -m monai.bundle``
    command line, read as Python Fire reads them: hyphens in names become underscores, a flag followed by
    another flag (or nothing) is True, and nothing after a bare ``--`` is a setting."""
    settings: dict[str, str | bool] = {}
    index = 0
    while index < len(argv) and argv[index] != "--":
        token = argv[index]
        index += 1
        if not _is_flag(token):
            continue
        name, equals, value = token.lstrip("-").partition("=")
        if not equals:
            if index < len(argv) and not _is_flag(argv[index]):
                value, index = argv[index], index + 1
            else:
                value = True
        settings[name.replace("-", "_")] = value
    return settings


def _accepts_keyword(component: dict, keyword: str) -> bool:
    """Whether the ``_target_`` of a config component takes ``keyword`` (a setting MONAI passes to it)."""
    from pydoc import locate

    from monai.bundle.config_item import ComponentLocator, ConfigComponent

    target = locate(str(ConfigComponent(config=component, locator=ComponentLocator()).resolve_module_name()))
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):  # not found, or a callable without a signature
        return False
    return any(p.name == keyword or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def unknown_settings(config: object, names: Iterable[str]) -> list[str]:
    """The ``names`` (config ids such as ``steps`` or ``network_def#channels``) that set nothing of
    ``config`` (a ``monai.bundle.ConfigParser`` of the config files): neither an existing id, nor a keyword
    of the component they would be passed to, nor one of :func:`monai_arguments`."""
    from monai.bundle.reference_resolver import ReferenceResolver

    allowed = monai_arguments()
    unknown = []
    for name in names:
        if name in allowed or name in config:
            continue
        parent, key = ReferenceResolver.split_id(name, last=True)
        component = config.get(parent) if parent else None
        if not (isinstance(component, dict) and "_target_" in component and _accepts_keyword(component, key)):
            unknown.append(name)
    return unknown


def check_settings(config: object, names: Iterable[str]) -> None:
    """Raise :class:`InputError` for settings of ``config`` that set nothing (:func:`unknown_settings`),
    suggesting the closest existing name at the same level."""
    from monai.bundle.reference_resolver import ReferenceResolver

    problems = []
    for name in unknown_settings(config, names):
        parent, _ = ReferenceResolver.split_id(name, last=True)
        level, prefix = config.get(parent), parent.replace(ReferenceResolver.sep, "#") + "#" if parent else ""
        known = [f"{prefix}{k}" for k in level] if isinstance(level, dict) else []
        close = difflib.get_close_matches(ReferenceResolver.normalize_id(name).replace(ReferenceResolver.sep, "#"),
                                          known, n=1)
        problems.append(repr(name) + (f" (did you mean {close[0]!r}?)" if close else ""))
    if problems:
        raise InputError(f"unknown setting{'s' if len(problems) > 1 else ''} {', '.join(problems)}: not a key of "
                         "this bundle's config files; check the spelling against configs/*.json")


def input_error_in(error: BaseException) -> InputError | None:
    """The :class:`InputError` ``error`` is or was raised from (MONAI wraps errors of config items)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, InputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def parsed_content(config: object, id: str) -> object:
    """``config.get_parsed_content(id)`` of a ``monai.bundle.ConfigParser``, raising the :class:`InputError`
    itself where MONAI wraps it in the RuntimeError of the config item that failed."""
    try:
        return config.get_parsed_content(id)
    except RuntimeError as error:
        cause = input_error_in(error)
        if cause is None:
            raise
        raise cause from None


def one_line_input_errors(previous: Callable[[type, BaseException, TracebackType | None], object]
                          ) -> Callable[[type, BaseException, TracebackType | None], None]:
    """A ``sys.excepthook`` that prints an uncaught error caused by bad input as ``error: <message>`` and exits
    with status 2, and hands any other error to ``previous``."""
    def hook(kind: type, error: BaseException, traceback: TracebackType | None) -> None:
        cause = input_error_in(error)
        if cause is None:
            previous(kind, error, traceback)
            return
        print(f"error: {cause}", file=sys.stderr, flush=True)
        raise SystemExit(2)  # Python exits with this status when an excepthook raises SystemExit

    hook.one_line_input_errors = True
    return hook


def running_monai_bundle_command() -> bool:
    """Whether this process is ``python -m monai.bundle ...`` (also under torchrun)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name == "monai.bundle.__main__"


def guard_run(*output_dirs: str | Path | None) -> None:
    """The first ``initialize`` expression of every bundle config (see the module docstring).

    On the command line (``python -m monai.bundle``): install :func:`one_line_input_errors` and refuse
    settings that set nothing (:func:`check_settings`, against the files of ``--config_file`` or
    ``--args_file``). Always: check that each given output folder can be written
    (:func:`diffrecon.checks.check_output_dir`).
    """
    if running_monai_bundle_command():
        if not getattr(sys.excepthook, "one_line_input_errors", False):
            sys.excepthook = one_line_input_errors(sys.excepthook)
        check_command_line(sys.argv[1:])
    for path in output_dirs:
        if path is not None:
            check_output_dir("output_dir", path)


def check_command_line(argv: Sequence[str]) -> None:
    """Refuse the settings of a ``python -m monai.bundle`` command line that set nothing in its config files
    (those of ``--config_file``, else of the ``config_file`` in ``--args_file``; the other entries of an args
    file are settings too). With ``--tracking``, the keys MONAI adds for experiment tracking count as known."""
    from fire.parser import DefaultParseValue
    from monai.bundle import ConfigParser
    from monai.bundle.utils import DEFAULT_EXP_MGMT_SETTINGS

    settings = command_line_settings(argv)
    arguments = ConfigParser.load_config_file(str(settings["args_file"])) if "args_file" in settings else {}
    arguments.update({k: DefaultParseValue(v) if isinstance(v, str) else v for k, v in settings.items()})
    if "config_file" not in arguments:
        return  # MONAI itself refuses a run without config files
    config = ConfigParser()
    config.read_config(arguments["config_file"])
    tracking = arguments.get("tracking")
    if tracking is not None:
        tracked = DEFAULT_EXP_MGMT_SETTINGS.get(str(tracking)) or ConfigParser.load_config_files(tracking)
        config.update({k: v for k, v in tracked["configs"].items() if k not in config})
    check_settings(config, arguments)


def run_bundle(config_files: Sequence[str | Path], bundle_root: str | Path, settings: Mapping[str, object],
               log: str | Path) -> None:
    """Run ``python -m monai.bundle run`` in a subprocess with ``config_files`` (later ones override earlier
    ones), ``bundle_root`` and ``settings`` (each as ``--name=value``), appending the command and its output to
    ``log``: what the training scripts and the personalised-prior pipeline run for a training config.

    Raises:
        RuntimeError: the run failed; the message names the log and quotes its last lines.
    """
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str([str(p) for p in config_files]),
               "--bundle_root", str(bundle_root)] + [f"--{name}={value}" for name, value in settings.items()]
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as stream:
        stream.write("$ " + " ".join(command) + "\n")
        stream.flush()
        status = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT).returncode
    if status:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise RuntimeError(f"bundle run failed (exit status {status}); log {log}:\n{tail}")


def end_distributed_rank() -> None:
    """End one rank of a torchrun bundle run (``finalize`` of bundles/common/multi_gpu_train.json): wait for every
    rank, destroy the process group, flush the logs and leave the process at once with status 0.

    Leaving at once skips the interpreter's teardown, which destroys the objects still holding the process group
    (DDP's reducer) while its worker threads run: with gloo that can abort a rank whose outputs are complete
    ("terminate called without an active exception", a worker thread taking the GIL during finalisation; seen in
    CI, pytorch/pytorch#179291). Call it only in a rank process: it never returns.
    """
    import logging

    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

