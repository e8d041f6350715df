"""Reading an XTCE file with space_packet_parser, leaving out what it cannot read.

space_packet_parser refuses a whole database for one element it does not support (a parameter
type without a data encoding, a ``CustomAlgorithm`` restriction ...). :func:`read_definition`
then removes that element, the parameters of that type and every container that needs them
(containers restricted by an algorithm, their inheritors, containers that include them), and
tries again; each container left out is reported by name with the reason. The file itself is
never changed.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import space_packet_parser as spp
from lxml import etree

from vigil.errors import ConfigError

_SPP_ERRORS = (ValueError, KeyError, NotImplementedError, TypeError, AttributeError)
_QUOTED = re.compile(r"'([^'\s]+)'")
_MAX_ROUNDS = 200


def read_definition(path: Path, root_container: str) -> tuple[spp.XtcePacketDefinition, dict[str, str]]:
    """The space_packet_parser definition and what was left out: ``{container, "parameter type T"
    or "parameter P": why}``.

    Raises:
        ConfigError: when the file is not XML, or when what fails cannot be pinned to an element.
    """
    src = str(path)
    try:
        return _load(path, root_container), {}
    except OSError as err:
        raise ConfigError(f"cannot read XTCE: {err}", source=src) from None
    except SyntaxError as err:  # lxml's XMLSyntaxError
        raise ConfigError(f"cannot read XTCE: {err}", source=src) from None
    except _SPP_ERRORS as err:
        first = err
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    tree = etree.parse(src, parser)
    unsupported: dict[str, str] = {}
    for cont in _containers(tree):
        crit = cont.find("{*}BaseContainer/{*}RestrictionCriteria")
        if crit is not None and (
            crit.find("{*}CustomAlgorithm") is not None or crit.find("{*}NextContainer") is not None
        ):
            _drop_container(tree, cont, "restriction criteria by CustomAlgorithm/NextContainer", unsupported)
    for _ in range(_MAX_ROUNDS):
        try:
            return _load(io.BytesIO(etree.tostring(tree)), root_container), unsupported
        except _SPP_ERRORS as err:
            if not _drop_named(tree, str(err), unsupported):
                raise ConfigError(f"cannot read XTCE: {first}", source=src) from None
    raise ConfigError(f"cannot read XTCE: {first}", source=src)


def _load(doc, root_container: str) -> spp.XtcePacketDefinition:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return spp.XtcePacketDefinition.from_xtce(doc, root_container_name=root_container)


def _containers(tree) -> list:
    return list(tree.iterfind(".//{*}ContainerSet/{*}SequenceContainer"))


def _drop_named(tree, message: str, unsupported: dict[str, str]) -> bool:
    """Remove the parameter type, parameter or container the error names; ``False`` if none."""
    names = _QUOTED.findall(message)
    types = {el.get("name"): el for el in tree.iterfind(".//{*}ParameterTypeSet/*")}
    params = {el.get("name"): el for el in tree.iterfind(".//{*}ParameterSet/{*}Parameter")}
    conts = {el.get("name"): el for el in _containers(tree)}
    reason = message.splitlines()[0][:200]
    for name in names:
        if name in types:
            gone = {p for p, el in params.items() if el.get("parameterTypeRef", "").rsplit("/", 1)[-1] == name}
            types[name].getparent().remove(types[name])
            for p in gone:
                params[p].getparent().remove(params[p])
            which = f" (parameters {', '.join(sorted(gone))})" if gone else ""
            unsupported[f"parameter type {name}"] = f"left out{which}: {reason}"
            _drop_users(tree, gone, f"parameter type {name}: {reason}", unsupported)
            return True
        if name in params:
            params[name].getparent().remove(params[name])
            unsupported[f"parameter {name}"] = f"left out: {reason}"
            _drop_users(tree, {name}, f"parameter {name}: {reason}", unsupported)
            return True
        if name in conts:
            _drop_container(tree, conts[name], reason, unsupported)
            return True
    return False


def _drop_users(tree, params: set[str], reason: str, unsupported: dict[str, str]) -> None:
    """Remove the containers whose entries or restriction criteria refer to ``params``."""
    for cont in _containers(tree):
        refs = {
            el.get("parameterRef", "").rsplit("/", 1)[-1] for el in cont.iter("{*}ParameterRefEntry", "{*}Comparison")
        }
        if refs & params and cont.getparent() is not None:
            _drop_container(tree, cont, reason, unsupported)


def _drop_container(tree, cont, reason: str, unsupported: dict[str, str]) -> None:
    """Remove a container and, with the same reason, every container built on it."""
    name = cont.get("name")
    if cont.getparent() is None:
        return
    cont.getparent().remove(cont)
    unsupported[name] = reason
    for other in _containers(tree):
        base = other.find("{*}BaseContainer")
        included = {el.get("containerRef", "").rsplit("/", 1)[-1] for el in other.iter("{*}ContainerRefEntry")}
        if (base is not None and base.get("containerRef", "").rsplit("/", 1)[-1] == name) or name in included:
            _drop_container(tree, other, f"built on {name}, left out ({reason})", unsupported)
