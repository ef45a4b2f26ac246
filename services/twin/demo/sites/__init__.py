"""The demo's fixture sites on the fixed ports the sample profile names."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from twin.demo.content import DemoContent
from twin.demo.server import Site, SiteServer
from twin.demo.sites.github import GitHubSite
from twin.demo.sites.linkedin import LinkedInSite
from twin.demo.sites.medium import MediumSite
from twin.demo.sites.substack import SubstackSite
from twin.demo.sites.web import WebSite
from twin.domain.documents import Platform

# Must match manifests/samples/twinprofile-alice.yaml.
DEMO_PORTS: dict[Platform, int] = {
    Platform.MEDIUM: 18701,
    Platform.SUBSTACK: 18702,
    Platform.LINKEDIN: 18703,
    Platform.GITHUB: 18704,
    Platform.WEB: 18705,
}


def build_sites(content: DemoContent) -> dict[Platform, Site]:
    return {
        Platform.MEDIUM: MediumSite(content),
        Platform.SUBSTACK: SubstackSite(content),
        Platform.LINKEDIN: LinkedInSite(content),
        Platform.GITHUB: GitHubSite(content),
        Platform.WEB: WebSite(content),
    }


@contextmanager
def serve_demo_sites(
    content: DemoContent, ports: dict[Platform, int] | None = None
) -> Iterator[dict[Platform, SiteServer]]:
    """Serve every platform's site; ``ports`` of 0 pick free ports (tests), default the demo's."""
    ports = DEMO_PORTS if ports is None else ports
    with ExitStack() as stack:
        yield {
            platform: stack.enter_context(SiteServer(site, port=ports[platform]))
            for platform, site in build_sites(content).items()
        }
