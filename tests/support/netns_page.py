"""The status page in a real headless Chromium, run inside a test namespace (where the page is).

    python -m tests.support.netns_page URL PASSWORD PEER [--approve | --map SHOT]

Logs in at URL, waits until the Peers card lists PEER, and prints one JSON line describing the
page at 1280 px: the Peers card's rows (cells and buttons), the words in that card drawn across
two lines, the Bus card's agent addresses and the Argentic configuration it offers to copy, and
what its copy button put on the clipboard.
With --approve, it then presses PEER's Approve button, waits for the card to show the peer
trusted, and prints a second line.
With --map, it opens the Overview page instead, waits until the map draws PEER and a connected
uplink, prints one JSON line describing the map's nodes (MAP below) and saves a screenshot to SHOT.
Exits non-zero, with the page's text, when a wait fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.support.browser import Browser

CARD = """(() => {
  const rows = [...document.querySelectorAll("#peers tbody tr")].map((row) => ({
    cells: [...row.cells].map((cell) => cell.textContent),
    buttons: [...row.querySelectorAll("button")].map((button) => button.textContent),
  }));
  const broken = [];
  const walker = document.createTreeWalker(document.getElementById("peers"), NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const match of node.textContent.matchAll(/\\S+/g)) {
      const range = document.createRange();
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
      if (lines.size > 1) broken.push(match[0]);
    }
  }
  const yaml = document.querySelector("#bus-connect pre");
  return {rows, broken, connect: [...document.querySelectorAll("#bus-connect li")]
    .map((li) => li.textContent), yaml: yaml ? yaml.textContent : null,
    copy: [...document.querySelectorAll("#bus-connect button")].map((b) => b.textContent)};
})()"""


# Every node the map draws around this one, in drawing order: its kind and name, the label under
# its circle, whether the circle lies inside the drawing, and the line from this node to it (its
# class, up or down, whether it ends at the circle) with the words on that line.
MAP = """(() => {
  const map = document.querySelector("#map svg");
  const frame = map.getBoundingClientRect();
  const nodes = [...map.querySelectorAll("g[data-kind]:not(.self)")].map((g) => {
    const whose = `[data-kind="${g.dataset.kind}"][data-name="${CSS.escape(g.dataset.name)}"]`;
    const circle = g.querySelector("circle").getBoundingClientRect();
    const line = map.querySelector(`line${whose}`);
    const words = map.querySelector(`text${whose}`);
    return {kind: g.dataset.kind, name: g.dataset.name, label: g.querySelector("text").textContent,
      inside: circle.width > 0 && circle.left >= frame.left && circle.right <= frame.right
        && circle.top >= frame.top && circle.bottom <= frame.bottom,
      line: line && line.getAttribute("class"),
      ends_at_circle: !!line && line.getAttribute("x2") === g.querySelector("circle").getAttribute("cx")
        && line.getAttribute("y2") === g.querySelector("circle").getAttribute("cy"),
      words: words ? words.textContent : null};
  });
  return {self: map.querySelector("g.self text").textContent, nodes};
})()"""


def row_of(peer: str) -> str:
    return (
        f"[...document.querySelectorAll('#peers tbody tr')]"
        f".find((row) => row.cells[0].textContent.startsWith({json.dumps(peer)}))"
    )


async def peers_card(browser: Browser, args: argparse.Namespace) -> None:
    await browser.wait_for(f"{row_of(args.peer)} && document.querySelector('#bus-connect li')", 30)
    report: dict[str, Any] = await browser.evaluate(CARD)
    await browser.grant_clipboard(args.url.rstrip("/"))
    await browser.evaluate("document.querySelector('#bus-connect button').click()")
    report["copied"] = await browser.wait_for(
        "document.querySelector('#bus-connect button').textContent === 'Copied' && "
        "navigator.clipboard.readText()"
    )
    print(json.dumps(report), flush=True)
    if args.approve:
        await browser.evaluate(
            f"[...{row_of(args.peer)}.querySelectorAll('button')]"
            ".find((b) => b.textContent === 'Approve').click()"
        )
        await browser.wait_for(f"{row_of(args.peer)}.cells[3].textContent === 'approved'", 20)
        print(json.dumps(await browser.evaluate(CARD)), flush=True)


async def overview_map(browser: Browser, args: argparse.Namespace) -> None:
    await browser.navigate(args.url.rstrip("/") + "/overview")
    peer = f"#map g.peer[data-name={json.dumps(args.peer)}]"
    uplink = "#map line.up[data-kind=uplink]"
    await browser.wait_for(
        f"document.querySelector({json.dumps(peer)}) && document.querySelector({json.dumps(uplink)})",
        30,
    )
    print(json.dumps(await browser.evaluate(MAP)), flush=True)
    await browser.screenshot(args.map, height=1200)


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("password")
    parser.add_argument("peer")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--approve", action="store_true")
    what.add_argument("--map", type=Path, metavar="SHOT")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as profile:
        browser = await Browser.launch(Path(profile))
        try:
            await browser.viewport()
            await browser.navigate(args.url)
            await browser.log_in(args.password)
            await (overview_map if args.map else peers_card)(browser, args)
        except Exception as exc:
            text = await browser.evaluate("document.body.innerText")
            print(f"netns_page: {exc}\n{text}", file=sys.stderr)
            return 1
        finally:
            await browser.close()
        if browser.problems:
            print(f"netns_page: the page had problems: {browser.problems}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
