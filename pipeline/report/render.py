"""Rendering the report's sections to Markdown and to one self-contained HTML file.

A report is a list of :class:`Section` made of text paragraphs, tables (numeric DataFrames shown
with :func:`pipeline.report.tables.display`) and figures (encoded bytes). The Markdown links the
figures saved under ``figures/``; the HTML embeds them as ``data:`` URIs and carries its own CSS,
so it opens anywhere without network access or neighbouring files.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from typing import Union

import pandas as pd

from pipeline.report.tables import display


@dataclass
class Text:
    text: str          # plain text; `code` spans are kept in Markdown and shown as <code> in HTML


@dataclass
class Table:
    caption: str
    frame: pd.DataFrame                   # numeric table with a "status" column
    directions: dict = field(default_factory=dict)
    spec: str = ".3f"
    specs: dict = field(default_factory=dict)
    raw: bool = False                     # already strings: show as they are (no best marking)


@dataclass
class Figure:
    name: str          # file name under figures/
    caption: str
    data: bytes

    @property
    def mime(self) -> str:
        return "image/jpeg" if self.name.endswith((".jpg", ".jpeg")) else "image/png"


Block = Union[Text, Table, Figure]


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1.2em;color:#1d1d1f;line-height:1.45}
h1{font-size:1.8em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
h3{margin-top:1.3em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.88em}
th,td{border:1px solid #d0d0d0;padding:.28em .6em;text-align:right}
th{background:#f3f4f6}td:first-child,th:first-child{text-align:left}
tbody tr:nth-child(even){background:#fafafa}td strong{color:#0a6b2f}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #e3e3e3}
figcaption{font-size:.88em;color:#555}.missing{color:#999}code{background:#f3f4f6;padding:0 .25em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.8em}.scroll{overflow-x:auto;max-width:100%}
""".strip()


def _table_frame(table: Table, mark: tuple[str, str]) -> pd.DataFrame:
    if table.raw:
        return table.frame
    return display(table.frame, table.directions, table.spec, table.specs, mark)


def _html_text(text: str) -> str:
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_markdown(title: str, sections: list[Section]) -> str:
    """Markdown report; figures referenced as ``figures/<name>``."""
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"{'#' * section.level} {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Text):
                lines += [block.text, ""]
            elif isinstance(block, Table):
                frame = _table_frame(block, ("**", "**"))
                lines += [f"**{block.caption}**", "", frame.to_markdown(disable_numparse=True), ""]
            else:
                lines += [f"![{block.caption}](figures/{block.name})", "", f"*{block.caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _html_table(block: Table) -> str:
    frame = _table_frame(block, ("\x00b", "\x00/b"))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [frame.index.name or "", *frame.columns])
    body = []
    for index, row in frame.iterrows():
        cells = []
        for value in row:
            text = html.escape(str(value)).replace("\x00b", "<strong>").replace("\x00/b", "</strong>")
            cls = ' class="missing"' if text == "missing" else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append(f"<tr><td>{html.escape(str(index))}</td>{''.join(cells)}</tr>")
    return (f'<div class="scroll"><table><caption>{html.escape(block.caption)}</caption><thead><tr>{head}'
            f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def to_html(title: str, sections: list[Section]) -> str:
    """One self-contained HTML page (inline CSS, images as base64 ``data:`` URIs, no scripts)."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        level = section.level
        out.append(f"<h{level}>{html.escape(section.title)}</h{level}>")
        for block in section.blocks:
            if isinstance(block, Text):
                if block.text.startswith("```"):
                    out.append(f"<pre>{html.escape(block.text.strip('`').strip())}</pre>")
                elif block.text.startswith("- "):
                    items = [line[2:] for line in block.text.splitlines() if line.startswith("- ")]
                    out.append("<ul>" + "".join(f"<li>{_html_text(i)}</li>" for i in items) + "</ul>")
                else:
                    out.append(f"<p>{_html_text(block.text)}</p>")
            elif isinstance(block, Table):
                out.append(_html_table(block))
            else:
                data = base64.b64encode(block.data).decode("ascii")
                out.append(f'<figure><img src="data:{block.mime};base64,{data}" alt="{html.escape(block.caption)}">'
                           f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
