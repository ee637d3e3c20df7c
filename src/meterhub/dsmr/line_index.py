"""dsmr-parser's telegram parse, with each line looked up once (a third of a parse saved)."""

from __future__ import annotations

import re
from typing import Any

from dsmr_parser.objects import Telegram as DsmrTelegram
from dsmr_parser.parsers import TelegramParser

#: an object signature of the common shape ``^<head>.+?\r\n`` (one line; the head only
#: digits, ``\d``, digit classes, ``-``, ``:`` and ``\.``, so it never reaches a ``(``)
_ONE_LINE = re.compile(r"\^((?:\\d|\[\d+\]|\d|-|:|\\\.)+)\.\+\?\\r\\n")
_HEADS_KEPT = 4096  #: distinct line heads remembered per dialect (a bound against junk)


class LineIndexParser:
    """dsmr-parser's parse, with each line looked up once instead of every signature
    searched through the whole telegram (71 scans of ~830 bytes for DSMR 5: a third of a
    parse).

    A one-line signature ``^<head>.+?\r\n`` matches a line exactly when ``<head>``
    matches the start of the text before the line's first ``(`` and something follows it
    on that line, so which objects a line belongs to depends on that text alone and is
    remembered. Objects of other signatures (DSMR 2.2's two-line gas reading) are still
    searched for as the library does. Objects are then parsed by the library's own value
    parsers and added in its order (spec order, then text order), so the Telegram is the
    one the library builds. Texts where a line start or a match could differ (a bare
    ``\n``, a line that is only a head) and encrypted dialects go to the library whole.
    """

    def __init__(self, parser: TelegramParser) -> None:
        self.parser = parser
        spec = parser.telegram_specification
        self.enabled = not spec.get("general_global_cipher")
        self._objects: list[tuple[dict[str, Any], re.Pattern[str] | None, re.Pattern[str]]] = []
        for obj in spec["objects"]:
            one_line = _ONE_LINE.fullmatch(obj["obis_reference"])
            self._objects.append((obj, re.compile(one_line.group(1)) if one_line else None,
                                  parser.telegram_specification_regexes[obj["obis_reference"]]))
        self._heads: dict[str, tuple[tuple[int, int], ...]] = {}

    def _members(self, head: str) -> tuple[tuple[int, int], ...]:
        """(object index, end of its head match) of each one-line object ``head`` starts."""
        found = self._heads.get(head)
        if found is None:
            if len(self._heads) >= _HEADS_KEPT:
                self._heads.clear()
            found = self._heads[head] = tuple(
                (i, match.end()) for i, (_, signature, _) in enumerate(self._objects)
                if signature is not None and (match := signature.match(head)))
        return found

    def parse(self, text: str) -> Any:
        """The library's Telegram for ``text``; raises as the library does with
        ``throw_ex=True``."""
        if not self.enabled or text.count("\n") != text.count("\r\n"):
            return self.parser.parse(text, throw_ex=True)
        lines: dict[int, list[str]] = {}
        for line in text.split("\r\n")[:-1]:  # the lines that end in \r\n
            head, paren, _ = line.partition("(")
            for index, end in self._members(head):
                if not paren and end == len(line):  # its match would run into the next line
                    return self.parser.parse(text, throw_ex=True)
                lines.setdefault(index, []).append(line + "\r\n")
        telegram = DsmrTelegram()
        for index, (obj, signature, pattern) in enumerate(self._objects):
            for match in lines.get(index, ()) if signature is not None else \
                    pattern.findall(text):
                telegram.add(obis_reference=obj["obis_reference"],
                             dsmr_object=obj["value_parser"].parse(match),
                             obis_name=obj["value_name"])
        return telegram
