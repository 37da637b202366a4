"""Where monitoring reports are written and the address they are served from."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field


class ReportStore(dg.ConfigurableResource):
    """A folder of self-contained HTML reports (+ JSON summaries and an index page).

    `base_url` is where that folder is served over HTTP (`make ui` starts a static server on
    127.0.0.1:8001), so a report link in the Dagster UI opens with one click; browsers refuse
    file:// links from an http page.
    """

    root: str = Field(description="reports folder")
    base_url: str = Field(default="http://127.0.0.1:8001", description="URL serving `root`")

    @property
    def folder(self) -> Path:
        path = Path(self.root)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def url_of(self, path: Path) -> str:
        return f"{self.base_url.rstrip('/')}/{Path(path).relative_to(self.folder).as_posix()}"
