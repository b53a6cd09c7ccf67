"""How the client commands show deliveries in a terminal: rich tables and follow lines.

Everything shown comes from relay's API, and much of it from outside (payload fields, a
target's callback description): it is put in `Text` objects, never parsed as rich markup,
and control characters are shown escaped, so no text can restyle or clear the terminal.
"""

from __future__ import annotations

import re
from typing import Any

from rich.table import Table
from rich.text import Text

from relay import models

STYLES = {"pending": "dim", "running": "blue", "sending": "blue",
          "awaiting_callback": "yellow", "success": "green", "failure": "red",
          "error": "magenta", "skipped": "dim", "paused": "yellow", "active": "green"}
MARKS = {"pending": "·", "sending": "→", "awaiting_callback": "…", "success": "✔",
         "failure": "✘", "error": "!", "skipped": "-", "paused": "‖"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(value: Any) -> str:
    """`value` as text with control characters (ESC above all) shown as \\xNN."""
    if value is None:
        return ""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def state(name: Any) -> Text:
    text = clean(name)
    return Text(text.replace("_", " "), style=STYLES.get(text, ""))


def when(iso: Any) -> str:
    return clean(iso).replace("T", " ")[:19] if iso else "—"


def chains(services: list[dict[str, Any]]) -> Table:
    """The chains as `relay chains` lists them, from Docker Cloud's service list."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("CHAIN", "SERVICE UUID", "TARGETS"):
        table.add_column(column, no_wrap=column != "TARGETS")
    for service in services:
        table.add_row(clean(service.get("name")), clean(service.get("uuid")),
                      Text(", ".join(clean(t) for t in service.get("targets", []))))
    return table


def history(items: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "RECEIVED (UTC)", "CHAIN", "REPOSITORY:TAG", "STATE", "STEPS",
                   "SUMMARY"):
        table.add_column(column, no_wrap=column != "SUMMARY")
    for item in items:
        steps = Text()
        for step in item.get("steps", []):
            steps.append(MARKS.get(step.get("state"), "?"),
                         style=STYLES.get(step.get("state"), ""))
        image = clean(item.get("repository"))
        if item.get("tag"):
            image += ":" + clean(item["tag"])
        table.add_row(clean(item.get("id")), when(item.get("received_at")),
                      clean(item.get("chain")), image, state(item.get("state")), steps,
                      Text(clean(item.get("summary"))))
    return table


def delivery(d: dict[str, Any]) -> list[Any]:
    """The head of a delivery, then a table of its steps (and of its end-of-chain notices)."""
    head = Text.assemble(("Delivery ", "bold"), (clean(d.get("id")), "bold"), "  ",
                         state(d.get("state")))
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim")
    facts.add_column()
    image = clean(d.get("repository")) + (":" + clean(d["tag"]) if d.get("tag") else "")
    rows = [("chain", clean(d.get("chain"))), ("repository", image),
            ("source", clean(d.get("source")))]
    if d.get("redelivery_of"):
        rows.append(("redelivery of", clean(d["redelivery_of"])))
    rows += [("received", when(d.get("received_at"))),
             ("finished", when(d.get("finished_at"))),
             ("summary", clean(d.get("summary")) or "—")]
    for name, value in rows:
        facts.add_row(name, Text(value))
    steps = Table(header_style="bold", expand=False)
    for column in ("#", "TARGET", "STATE", "ATTEMPTS", "CALLBACK"):
        steps.add_column(column)
    for step in d.get("steps", []):
        target = Text(clean(step.get("target")))
        target.append("\n" + clean(step.get("url")), style="dim")
        if step.get("reason"):
            target.append("\n" + clean(step["reason"]), style="dim")
        steps.add_row(str(step.get("index", 0) + 1), target, state(step.get("state")),
                      attempts(step.get("attempts") or []), callback(step.get("callback")))
    shown: list[Any] = [head, facts, steps]
    notices = [n for n in [d.get("upstream"), *(d.get("notices") or [])] if n]
    if notices:
        table = Table(header_style="bold", title="when the chain ended", title_justify="left")
        for column in ("KIND", "URL", "STATE", "ATTEMPTS"):
            table.add_column(column)
        for notice in notices:
            url = Text(clean(notice.get("url")))
            if notice.get("reason"):
                url.append("\n" + clean(notice["reason"]), style="dim")
            table.add_row(clean(notice.get("kind")), url, state(notice.get("state")),
                          attempts(notice.get("attempts") or []))
        shown.append(table)
    return shown


def targets(items: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("CHAIN", "TARGET", "STATE", "SINCE (UTC)", "FAILURES", "WAITING",
                   "LAST ERROR"):
        table.add_column(column, no_wrap=column != "LAST ERROR")
    for item in items:
        shown = state(item.get("state"))
        if item.get("paused_by"):
            shown.append(f" by {clean(item['paused_by'])}", style="dim")
        table.add_row(clean(item.get("chain")), clean(item.get("target")), shown,
                      when(item.get("since")), str(item.get("consecutive_failures", 0)),
                      str(item.get("waiting", 0)), Text(clean(item.get("last_error"))))
    return table


def attempts(items: list[dict[str, Any]]) -> Text:
    text = Text()
    for n, attempt in enumerate(items, start=1):
        if n > 1:
            text.append("\n")
        text.append(f"{n}: ")
        text.append_text(answer(attempt))
    return text or Text("none yet", style="dim")


def answer(attempt: dict[str, Any]) -> Text:
    status = attempt.get("status")
    took = f" in {float(attempt.get('duration_ms') or 0):.1f} ms"
    if status is None:
        return Text(clean(attempt.get("error") or "no answer") + took, style="red")
    style = "green" if 200 <= status < 300 else "red"
    text = Text(str(status), style=style)
    text.append(took)
    if attempt.get("error"):
        text.append(" " + clean(attempt["error"]), style="dim")
    response = attempt.get("response") or {}
    if response.get("body"):
        body = clean(response["body"]).strip().replace("\n", " ")
        text.append(f"\n   {body[:120]}{'…' if len(body) > 120 else ''}", style="dim")
    return text


def callback(found: dict[str, Any] | None, one_line: bool = False) -> Text:
    if not found:
        return Text("none yet", style="dim")
    text = state(found.get("state"))
    if found.get("description"):
        text.append(": " + clean(found["description"]))
    if found.get("context") and not one_line:
        text.append("\n" + clean(found["context"]), style="dim")
    if found.get("target_url"):
        text.append(" " if one_line else "\n")
        text.append(clean(found["target_url"]), style="underline")
    return text


def changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[Text]:
    """Lines for what happened to a delivery between two looks at it (`relay send`)."""
    lines: list[Text] = []
    old_steps = {s["index"]: s for s in (before or {}).get("steps", [])}
    for step in after.get("steps", []):
        old = old_steps.get(step["index"], {})
        label = Text(f"  {step['index'] + 1} {clean(step.get('target')):<16} ")
        seen = len(old.get("attempts") or [])
        for n, attempt in enumerate((step.get("attempts") or [])[seen:], start=seen + 1):
            lines.append(label + Text(f"attempt {n}: ") + answer(attempt))
        if step.get("callback") and not old.get("callback"):
            lines.append(label + Text("callback ") + callback(step["callback"], one_line=True))
        if step.get("state") != old.get("state", "pending"):
            line = label + state(step.get("state"))
            if step.get("reason") and step.get("state") != "awaiting_callback":
                line.append(" (" + clean(step["reason"]) + ")", style="dim")
            lines.append(line)
    ended = after.get("state") in models.FINAL_DELIVERY_STATES
    if ended and (before or {}).get("state") != after.get("state"):
        line = state(after["state"])
        line.stylize("bold")
        line.append(": " + clean(after.get("summary")))
        lines.append(line)
    return lines
