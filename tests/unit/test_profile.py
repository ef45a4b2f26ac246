from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from twin.domain.documents import Platform
from twin.domain.errors import InvalidSpec
from twin.domain.profile import parse_profile

SAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "twinprofile-alice.yaml"


def sample() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    return data


def test_sample_profile_parses() -> None:
    profile = parse_profile(sample())
    assert profile.name == "alice"
    assert [s.resolved_platform() for s in profile.spec.sources] == [
        Platform.MEDIUM,
        Platform.SUBSTACK,
        Platform.LINKEDIN,
        Platform.GITHUB,
        Platform.WEB,
    ]
    assert profile.spec.training.lora.rank == 16  # defaults fill what the sample leaves out


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["spec"]["sources"][0].update(password="hunter2"),
            "spec.sources.0.password: Extra inputs",
        ),
        (lambda d: d["spec"].update(sources=[]), "spec.sources: List should have at least 1 item"),
        (lambda d: d["metadata"].update(name="Alice_Moreau"), "RFC 1123"),
        (lambda d: d.update(kind="Pod"), "kind"),
        (lambda d: d["spec"]["sources"].append(dict(d["spec"]["sources"][0])), "listed twice"),
        (lambda d: d["spec"].update(training={"lora": {"rank": 0}}), "spec.training.lora.rank"),
        (lambda d: d["spec"]["sources"][0].update(platform="myspace"), "spec.sources.0.platform"),
        (lambda d: d["spec"].pop("owner"), "spec.owner: Field required"),
        (
            lambda d: d["spec"].update(serving={"minReplicas": 3, "maxReplicas": 2}),
            "minReplicas must be less than or equal to maxReplicas",
        ),
        (lambda d: d["spec"].update(crawl={"schedule": "0 3 * *"}), "spec.crawl.schedule"),
        (
            lambda d: d["spec"]["training"].update(retraining={"schedule": "@daily"}),
            "spec.training.retraining.schedule",
        ),
        # A secret pasted where a Secret reference belongs is a type error, not a value.
        (lambda d: d["spec"].update(credentialsSecretRef="hunter2"), "spec.credentialsSecretRef"),
        (lambda d: d["spec"]["training"].update(tolerations=[{"value": "x"}]), "operator must be Exists"),
    ],
)
def test_invalid_profiles_say_why(mutate: Any, message: str) -> None:
    data = sample()
    mutate(data)
    with pytest.raises(InvalidSpec, match=message):
        parse_profile(data)


def test_non_mapping_profile() -> None:
    with pytest.raises(InvalidSpec, match="must be a mapping"):
        parse_profile(["not", "a", "profile"])


def test_malformed_source_url_is_accepted_by_the_spec_and_fails_per_source() -> None:
    # One bad link must not make the whole profile unusable: it fails its own source at crawl time.
    data = sample()
    data["spec"]["sources"][0]["url"] = "htp:/broken"
    profile = parse_profile(data)
    with pytest.raises(Exception, match="unsupported scheme"):
        profile.spec.sources[0].checked_url()
