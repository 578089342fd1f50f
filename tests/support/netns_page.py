"""The status page in a real headless Chromium, run inside a test namespace (where the page is).

    python -m tests.support.netns_page URL PASSWORD PEER [--approve]

Logs in at URL, waits until the Peers card lists PEER, and prints one JSON line describing the
page at 1280 px: the Peers card's rows (cells and buttons), the words in that card drawn across
two lines, the Bus card's agent addresses and the Argentic configuration it offers to copy, and
what its copy button put on the clipboard.
With --approve, it then presses PEER's Approve button, waits for the card to show the peer
trusted, and prints a second line. Exits non-zero, with the page's text, when a wait fails.
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


def row_of(peer: str) -> str:
    return (
        f"[...document.querySelectorAll('#peers tbody tr')]"
        f".find((row) => row.cells[0].textContent.startsWith({json.dumps(peer)}))"
    )


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("password")
    parser.add_argument("peer")
    parser.add_argument("--approve", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as profile:
        browser = await Browser.launch(Path(profile))
        try:
            await browser.viewport()
            await browser.navigate(args.url)
            await browser.log_in(args.password)
            await browser.wait_for(
                f"{row_of(args.peer)} && document.querySelector('#bus-connect li')", 30
            )
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
                await browser.wait_for(
                    f"{row_of(args.peer)}.cells[3].textContent === 'approved'", 20
                )
                print(json.dumps(await browser.evaluate(CARD)), flush=True)
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
