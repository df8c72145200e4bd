"""The configuration as XML (`ec_dump_config`) and back.

Owns: the XML shape and its reader. The shape:

    <ecelerity_config format="1" generation="1" path="/etc/ecelerity.conf">
      <scope kind="Global">
        <option name="Message_Expiration" raw="86400" file="/etc/ecelerity.conf" line="1">
          <int>86400</int>
        </option>
        <scope kind="Binding" name="example" keyword="binding" file="..." line="3">
          <location file="..." line="3"/>          (one per stanza merged into the scope)
          ...
        </scope>
      </scope>
    </ecelerity_config>

Scopes are `scope` elements (kind, name when named, keyword as first written, module for
module stanzas, implicit="true" for built-in ThreadPools/Debug_Flags); options are
`option` elements carrying the canonical name, the raw literal, file and line, and the
typed value as one child: <bool>, <int>, <string>, <list> of values, <dict> of
<entry key="..">value</entry>, <rate count="N" seconds="S"/>. Text that XML cannot carry
(control characters) is stored base64 with b64="1" (raw_b64 for the raw attribute).

Talks to: `model.py`; used by `cli/ec_dump_config.py` and tests (round trip). Fails with
`ConfigError` when the XML is not a dump of this shape.
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

from ecmta.config.model import Config, ConfigError, FrozenDict, Rate, Scope, Value

FORMAT = "1"
_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode("ascii")


def _unb64(text: str) -> str:
    return base64.b64decode(text.encode("ascii")).decode("utf-8", "surrogatepass")


def _set_text(el: ET.Element, text: str):
    if _BAD_XML.search(text):
        el.set("b64", "1")
        el.text = _b64(text)
    else:
        el.text = text


def _get_text(el: ET.Element) -> str:
    text = el.text or ""
    return _unb64(text) if el.get("b64") == "1" else text


def _set_attr(el: ET.Element, name: str, text: str):
    if _BAD_XML.search(text):
        el.set(name + "_b64", _b64(text))
    else:
        el.set(name, text)


def _get_attr(el: ET.Element, name: str) -> str | None:
    if el.get(name + "_b64") is not None:
        return _unb64(el.get(name + "_b64"))
    return el.get(name)


# -- writing --------------------------------------------------------------------------------

def _typed(parent: ET.Element, value):
    if isinstance(value, bool):
        ET.SubElement(parent, "bool").text = "true" if value else "false"
    elif isinstance(value, Rate):
        ET.SubElement(parent, "rate", count=str(value.count), seconds=str(value.seconds))
    elif isinstance(value, int):
        ET.SubElement(parent, "int").text = str(value)
    elif isinstance(value, str):
        _set_text(ET.SubElement(parent, "string"), value)
    elif isinstance(value, (tuple, list)):
        el = ET.SubElement(parent, "list")
        for item in value:
            _typed(el, item)
    elif isinstance(value, dict):
        el = ET.SubElement(parent, "dict")
        for k, v in value.items():
            entry = ET.SubElement(el, "entry")
            _set_attr(entry, "key", k)
            _typed(entry, v)
    elif value is None:
        ET.SubElement(parent, "none")
    else:
        raise TypeError(f"cannot dump value {value!r}")


def _scope(parent: ET.Element | None, scope: Scope) -> ET.Element:
    el = ET.Element("scope") if parent is None else ET.SubElement(parent, "scope")
    _set_attr(el, "kind", scope.kind)
    if scope.name is not None:
        _set_attr(el, "name", scope.name)
    if scope.keyword != scope.kind:
        _set_attr(el, "keyword", scope.keyword)
    if scope.module:
        _set_attr(el, "module", scope.module)
    if scope.file:
        _set_attr(el, "file", scope.file)
        el.set("line", str(scope.line))
    if scope.implicit:
        el.set("implicit", "true")
    for file, line in scope.locations:
        loc = ET.SubElement(el, "location", line=str(line))
        _set_attr(loc, "file", file)
    for v in scope.options.values():
        opt = ET.SubElement(el, "option")
        _set_attr(opt, "name", v.option)
        _set_attr(opt, "raw", v.raw)
        if v.file is not None:
            _set_attr(opt, "file", v.file)
            opt.set("line", str(v.line))
        _typed(opt, v.value)
    for child in scope.children:
        _scope(el, child)
    return el


def dumps(cfg: Config) -> str:
    root = ET.Element("ecelerity_config", format=FORMAT, generation=str(cfg.generation))
    if cfg.path:
        _set_attr(root, "path", cfg.path)
    root.append(_scope(None, cfg.root))
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# -- reading --------------------------------------------------------------------------------

def _untyped(el: ET.Element):
    tag = el.tag
    if tag == "bool":
        return (el.text or "").strip() == "true"
    if tag == "int":
        return int((el.text or "").strip())
    if tag == "string":
        return _get_text(el)
    if tag == "rate":
        return Rate(int(el.get("count")), int(el.get("seconds")))
    if tag == "list":
        return tuple(_untyped(c) for c in el)
    if tag == "dict":
        return FrozenDict((_get_attr(e, "key"), _untyped(e[0])) for e in el)
    if tag == "none":
        return None
    raise ValueError(f"unknown value element <{tag}>")


def _read_scope(el: ET.Element) -> Scope:
    if el.tag != "scope":
        raise ValueError(f"expected <scope>, found <{el.tag}>")
    options, children, locations = {}, [], []
    for c in el:
        if c.tag == "option":
            values = list(c)
            if len(values) != 1:
                raise ValueError(f"option {c.get('name')} needs exactly one value element")
            line = int(c.get("line", "0"))
            v = Value(_get_attr(c, "name"), _untyped(values[0]), _get_attr(c, "raw") or "",
                      _get_attr(c, "file"), line)
            options[v.option.lower()] = v
        elif c.tag == "scope":
            children.append(_read_scope(c))
        elif c.tag == "location":
            locations.append((_get_attr(c, "file"), int(c.get("line", "0"))))
        else:
            raise ValueError(f"unexpected <{c.tag}> in <scope>")
    kind = _get_attr(el, "kind")
    if not kind:
        raise ValueError("<scope> without kind")
    return Scope(kind, _get_attr(el, "name"), keyword=_get_attr(el, "keyword"), options=options,
                 children=children, file=_get_attr(el, "file"), line=int(el.get("line", "0")),
                 module=_get_attr(el, "module"), locations=locations, implicit=el.get("implicit") == "true")


def loads(text: str, *, registry=None, allow_unbuilt: bool = False) -> Config:
    """The Config an `ec_dump_config` XML document describes (without its files)."""
    try:
        root = ET.fromstring(text)
        if root.tag != "ecelerity_config" or root.get("format") != FORMAT:
            raise ValueError("not an ecmta configuration dump (format 1)")
        scopes = [c for c in root if c.tag == "scope"]
        if len(scopes) != 1:
            raise ValueError("expected exactly one top-level <scope>")
        tree = _read_scope(scopes[0])
        generation = int(root.get("generation", "1"))
    except (ET.ParseError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise ConfigError(f"bad configuration XML: {exc}")
    return Config(tree, generation=generation, registry=registry, path=_get_attr(root, "path"),
                  allow_unbuilt=allow_unbuilt)
