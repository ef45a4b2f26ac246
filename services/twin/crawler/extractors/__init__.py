"""The extractor registry: one pure extractor per platform, chosen by the source's platform."""

from __future__ import annotations

from twin.crawler.extractors.base import Extractor
from twin.crawler.extractors.github import GitHubExtractor
from twin.crawler.extractors.linkedin import LinkedInExtractor
from twin.crawler.extractors.medium import MediumExtractor
from twin.crawler.extractors.substack import SubstackExtractor
from twin.crawler.extractors.web import WebExtractor
from twin.domain.documents import Platform

REGISTRY: dict[Platform, Extractor] = {
    Platform.MEDIUM: MediumExtractor(),
    Platform.SUBSTACK: SubstackExtractor(),
    Platform.LINKEDIN: LinkedInExtractor(),
    Platform.GITHUB: GitHubExtractor(),
    Platform.WEB: WebExtractor(),
}


def extractor_for(platform: Platform) -> Extractor:
    return REGISTRY[platform]
