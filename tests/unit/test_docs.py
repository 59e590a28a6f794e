"""The docs stay true to the code: config keys, commands, links and the architecture map are
read from the code itself and looked for in docs/, and the other way round."""
from __future__ import annotations

import dataclasses
import inspect
import re
import tomllib
import typing
from pathlib import Path

import typer
import yaml
from pydantic import BaseModel

from orchestrator.cli import cli
from orchestrator.config import settings
from orchestrator.config.sources import SOURCE_TYPES
from orchestrator.core import errors, keys
from orchestrator.core.events import Event

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
TOP_DIRS = ("orchestrator", "workers", "tests", "bench", "config", "examples", "docs")


def doc(name: str) -> str:
    return (DOCS / name).read_text()


def code_spans(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", text))


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", text, flags=re.S | re.M)


def tables(text: str) -> list[list[list[str]]]:
    """Each Markdown table as rows of cells, its header first (the --- row left out)."""
    found, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(set(c) <= set("-: ") for c in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def table_headed(text: str, first_cell: str) -> list[list[str]]:
    matching = [t for t in tables(text) if t[0][0] == first_cell]
    assert len(matching) == 1, f"expected one table headed {first_cell!r}"
    return matching[0][1:]


# --- configuration -------------------------------------------------------------------------

def models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation names, inside unions, containers and Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in models_in(arg)]


def model_keys(roots: list[type[BaseModel]]) -> dict[type[BaseModel], set[str]]:
    """Every model reachable from the roots, with the keys it accepts (aliases as written)."""
    found: dict[type[BaseModel], set[str]] = {}
    todo = list(roots)
    while todo:
        model = todo.pop()
        if model in found:
            continue
        found[model] = {info.alias or name for name, info in model.model_fields.items()}
        todo += [m for info in model.model_fields.values() for m in models_in(info.annotation)]
    return found


def source_models() -> dict[type[BaseModel], set[str]]:
    return model_keys(models_in(settings.AppConfig.model_fields["source"].annotation))


def general_models() -> dict[type[BaseModel], set[str]]:
    sources = source_models()
    return {m: k for m, k in model_keys([settings.SluiceConfig]).items() if m not in sources}


def documented_keys(text: str) -> set[str]:
    """Keys a page documents: as `key` in backticks, or as a key of one of its YAML examples."""
    def yaml_keys(value) -> set[str]:
        if isinstance(value, dict):
            return {str(k) for k in value} | {k for v in value.values() for k in yaml_keys(v)}
        return set()
    return code_spans(text) | {k for block in yaml_blocks(text) for k in yaml_keys(yaml.safe_load(block))}


def test_the_config_walk_reaches_every_settings_model_and_every_source_type():
    assert {settings.SluiceConfig, settings.AppConfig, settings.ApiConfig, settings.FtpConfig,
            settings.RetryPolicy} <= general_models().keys()
    types = {typing.get_args(m.model_fields["type"].annotation)[0]
             for m in source_models() if "type" in m.model_fields}
    assert types == set(SOURCE_TYPES)


def test_every_settings_key_is_documented_in_the_configuration_page():
    documented = documented_keys(doc("configuration.md"))
    missing = {f"{m.__name__}.{k}" for m, ks in general_models().items() for k in ks - documented}
    assert not missing, f"undocumented in docs/configuration.md: {sorted(missing)}"


def test_every_source_key_is_documented_in_the_sources_page():
    documented = documented_keys(doc("sources.md"))
    missing = {f"{m.__name__}.{k}" for m, ks in source_models().items() for k in ks - documented}
    assert not missing, f"undocumented in docs/sources.md: {sorted(missing)}"


def test_the_sources_table_lists_exactly_the_source_types_the_config_accepts():
    listed = {re.findall(r"`([^`]+)`", row[0])[0] for row in table_headed(doc("sources.md"), "`type`")}
    assert listed == set(SOURCE_TYPES)


def test_every_yaml_example_in_the_config_docs_is_a_valid_configuration():
    """So every key an example shows exists in the models (they refuse unknown keys), and
    each parses as YAML as it is written (`${NAME}` is expanded only after parsing)."""
    for page in ("configuration.md", "sources.md", "security.md"):
        for block in yaml_blocks(doc(page)):
            validate_example(yaml.safe_load(block), page)


def validate_example(example: dict, page: str) -> None:
    example = with_variables_set(example)
    top = set(example)
    if top <= set(settings.SluiceConfig.model_fields):
        settings.SluiceConfig.model_validate(example)
    elif top <= set(settings.AppConfig.model_fields):
        settings.AppConfig.model_validate({"target": "/srv/example", **example})
    else:
        raise AssertionError(f"{page}: a YAML example that is neither a config nor an app's keys: {top}")


def with_variables_set(value):
    """The example as the loader sees it once each `${NAME}` is expanded, to a value long
    enough for a secret (each name its own: two secrets that must differ do)."""
    if isinstance(value, dict):
        return {k: with_variables_set(v) for k, v in value.items()}
    if isinstance(value, list):
        return [with_variables_set(v) for v in value]
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: m.group(1).ljust(32, "x"), value) \
        if isinstance(value, str) else value


# --- commands ------------------------------------------------------------------------------

def cli_commands() -> dict:
    """Every runnable command by its words after `sluice`, e.g. "credentials set". (Typer
    may bring its own copy of click, so commands and options are told apart by what they
    have, not by click's classes.)"""
    def walk(group, prefix: str) -> dict:
        found: dict = {}
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                found |= walk(command, f"{prefix}{name} ")
            else:
                found[prefix + name] = command
        return found
    return walk(typer.main.get_command(cli), "")


def long_options(command) -> set[str]:
    return {o for p in command.params if p.param_type_name == "option" for o in p.opts
            if o.startswith("--") and o != "--help"}


def command_words(span: str) -> str:
    """`sluice credentials set APP USER` -> "credentials set": the words before any argument
    placeholder or option."""
    words = []
    for word in span.split()[1:]:
        if word.startswith(("-", "[")) or word.isupper() or word == "...":
            break
        words.append(word)
    return " ".join(words)


def documented_commands() -> dict[str, str]:
    """Each command in docs/commands.md's table, with its row's text."""
    rows: dict[str, str] = {}
    for row in table_headed(doc("commands.md"), "command"):
        for span in re.findall(r"`(sluice[^`]*)`", row[0]):
            rows[command_words(span)] = rows.get(command_words(span), "") + " | ".join(row)
    return rows


def test_every_sluice_command_is_in_the_commands_table_and_every_row_is_a_command():
    documented, registered = documented_commands(), cli_commands()
    assert registered.keys() - documented.keys() == set(), "commands missing from docs/commands.md"
    assert documented.keys() - registered.keys() == set(), "docs/commands.md names commands sluice lacks"


def test_every_option_of_every_command_is_in_its_row_and_every_option_there_exists():
    documented, registered = documented_commands(), cli_commands()
    for name, command in registered.items():
        row = documented.get(name, "")
        shown = set(re.findall(r"--[\w-]+", row))
        assert long_options(command) <= shown, (name, long_options(command) - shown)
        assert shown <= long_options(command), (name, shown - long_options(command))


def test_the_options_every_command_takes_are_documented_and_exist():
    root = typer.main.get_command(cli)
    rows = table_headed(doc("commands.md"), "option")
    shown = {o for row in rows for o in re.findall(r"--[\w-]+", row[0])}
    assert shown == long_options(root)


# --- links and paths -----------------------------------------------------------------------

def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors: headings lower-cased, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M),
                          flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_file_the_docs_link_to_exists_and_so_does_the_heading():
    for page in PAGES:
        for link in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"^[a-z]+:", link):
                continue
            path, _, anchor = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            assert target.exists(), f"{page.name}: link to missing {link}"
            if anchor:
                assert anchor in heading_anchors(target), f"{page.name}: no heading for {link}"


def test_every_repository_path_the_docs_name_in_code_exists():
    for page in PAGES:
        for span in code_spans(page.read_text()):
            if re.fullmatch(rf"(?:{'|'.join(TOP_DIRS)})/[\w./-]*", span):
                assert (ROOT / span).exists(), f"{page.name}: `{span}` does not exist"


# --- the architecture map ------------------------------------------------------------------

def modules() -> set[str]:
    """Every module with something in it (empty package markers aside)."""
    return {p.relative_to(ROOT).as_posix() for top in ("orchestrator", "workers")
            for p in (ROOT / top).rglob("*.py") if p.read_text().strip()}


def test_every_module_the_map_names_exists_and_every_module_is_on_the_map():
    named = set(re.findall(r"\b((?:orchestrator|workers)/[\w/]*\w\.py)\b", doc("architecture.md")))
    existing = {p.relative_to(ROOT).as_posix() for top in ("orchestrator", "workers")
                for p in (ROOT / top).rglob("*.py")}
    assert named - existing == set(), "docs/architecture.md names modules that do not exist"
    assert modules() - named == set(), "modules missing from docs/architecture.md"


def test_the_map_shows_the_import_layers_the_linter_enforces():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    layers = next(c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    chain = " > ".join(layer.replace("orchestrator.", "") for layer in layers)
    assert chain in doc("architecture.md").splitlines()


def test_every_event_is_on_the_map_with_all_its_fields_and_no_other_events_are():
    rows = {row[0].strip("`"): row[1] for row in table_headed(doc("architecture.md"), "event")}
    events = {cls.__name__: cls for cls in Event.registry.values()}
    assert rows.keys() == events.keys()
    for name, cls in events.items():
        fields = {f.name for f in dataclasses.fields(cls)} - {"app", "at"}
        assert fields == code_spans(rows[name]), name


def redis_keys() -> set[str]:
    """Every key orchestrator/core/keys.py makes, with its parameters as {name}."""
    found = set()
    for value in vars(keys).values():
        if isinstance(value, str) and value.startswith(keys.PREFIX) and value != keys.PREFIX:
            found.add(value)
        elif inspect.isfunction(value) and value.__module__ == keys.__name__:
            found.add(value(*(f"{{{p}}}" for p in inspect.signature(value).parameters)))
    return found


def test_every_redis_key_is_on_the_map_and_the_map_names_no_other():
    rows = {row[0].strip("`") for row in table_headed(doc("architecture.md"), "key")}
    assert rows == redis_keys()


def test_every_error_class_of_the_error_tree_is_on_the_map():
    text = doc("architecture.md")
    defined = [name for name, cls in vars(errors).items()
               if inspect.isclass(cls) and issubclass(cls, Exception) and cls.__module__ == errors.__name__]
    assert defined
    missing = [name for name in defined if not re.search(rf"\b{name}\b", text)]
    assert not missing, f"errors missing from docs/architecture.md: {missing}"
