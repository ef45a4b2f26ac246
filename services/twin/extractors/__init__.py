"""The extractor registry: one pure extractor per platform, chosen by the source's platform."""

from __future__ import annotations

from twin.domain.documents import Platform
from twin.extractors.base import Extractor
from twin.extractors.github import GitHubExtractor
from twin.extractors.linkedin import LinkedInExtractor
from twin.extractors.medium import MediumExtractor
from twin.extractors.substack import SubstackExtractor
from twin.extractors.web import WebExtractor

REGISTRY: dict[Platform, Extractor] = {
    Platform.MEDIUM: MediumExtractor(),
    Platform.SUBSTACK: SubstackExtractor(),
    Platform.LINKEDIN: LinkedInExtractor(),
    Platform.GITHUB: GitHubExtractor(),
    Platform.WEB: WebExtractor(),
}


def extractor_for(platform: Platform) -> Extractor:
    return REGISTRY[platform]
