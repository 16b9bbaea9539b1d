"""Publishing a compiled pipeline template to an Artifact Registry KFP repository.

A template is uploaded to `https://REGION-kfp.pkg.dev/PROJECT/REPO` as a version named by its
digest, with tags; `alignpipe submit` / `schedule` (`pipelines/vertex.py`) then take
`https://REGION-kfp.pkg.dev/PROJECT/REPO/NAME/TAG` as their template. kfp and google-auth are
imported inside the functions that use them: the CLI starts without them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

import yaml

from alignpipe.errors import AlignPipeError

KFP_REPOSITORY = re.compile(r"https://[a-z0-9-]+-kfp\.pkg\.dev/[a-z0-9:.-]+/[a-z0-9_.-]+")
# Tags go to Artifact Registry as one comma-separated field; "sha256:..." names a version, not a tag.
TEMPLATE_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class PublishedTemplate:
    """A pipeline template in an Artifact Registry KFP repository.

    Attributes:
        repository: the repository's URL, `https://REGION-kfp.pkg.dev/PROJECT/REPO`.
        name: the template's name there (the pipeline's name).
        version: the uploaded version, `sha256:DIGEST`.
        tags: the tags it was given.
    """

    repository: str
    name: str
    version: str
    tags: tuple[str, ...] = ()

    def url(self, ref: str) -> str:
        """The URL `JobSpec.template` takes for a tag or version of this template."""
        return f"{self.repository}/{self.name}/{ref}"

    @property
    def urls(self) -> list[str]:
        """The URL of each tag; of the version when there is no tag."""
        return [self.url(tag) for tag in self.tags] or [self.url(self.version)]


def template_name(template: str) -> str:
    """The pipeline name inside a compiled template file (Artifact Registry names it so).

    Raises:
        AlignPipeError: no such file, or not a compiled kfp pipeline.
    """
    if not os.path.isfile(template):
        raise AlignPipeError(f"template file {template!r} does not exist")
    try:
        with open(template) as f:
            spec = next(yaml.safe_load_all(f), None)
        return str(spec["pipelineInfo"]["name"])
    except (yaml.YAMLError, UnicodeDecodeError, TypeError, KeyError):
        raise AlignPipeError(
            f"template file {template!r} is not a compiled kfp pipeline (no pipelineInfo.name); "
            "write one with `alignpipe compile --out FILE`"
        ) from None


def publish_template(
    template: str, repository: str, tags: Iterable[str] = (), credentials=None
) -> PublishedTemplate:
    """Uploads a compiled template to an Artifact Registry KFP repository, with tags.

    Args:
        template: the compiled pipeline YAML.
        repository: `https://REGION-kfp.pkg.dev/PROJECT/REPO`.
        tags: tags of the new version, moved to it when another version holds them; empty ones
            and repeats are skipped, so that CI can pass a tag that is empty on some builds.
        credentials: Google credentials; None = the application default credentials.

    Returns:
        The published template: its name, version and the URL of each tag.

    Raises:
        AlignPipeError: a bad file, repository URL or tag, no credentials, or Artifact
            Registry refused the upload or could not be reached.
    """
    repository = repository.rstrip("/")
    if not KFP_REPOSITORY.fullmatch(repository):
        raise AlignPipeError(
            f"--host {repository!r} is not an Artifact Registry KFP repository URL: "
            "https://REGION-kfp.pkg.dev/PROJECT/REPO"
        )
    tags = tuple(dict.fromkeys(tag for tag in tags if tag))
    for tag in tags:
        if not TEMPLATE_TAG.fullmatch(tag):
            raise AlignPipeError(
                f"--tag {tag!r} is not a template tag: letters, digits, '.', '_' and '-' "
                "(at most 128, starting with a letter or digit)"
            )
    template_name(template)  # a clear error before any request
    name, version = _upload_template(template, repository, list(tags), credentials)
    return PublishedTemplate(repository, name, version, tags)


def _upload_template(template: str, repository: str, tags: list[str], credentials) -> tuple[str, str]:
    import requests
    from google.auth import exceptions as auth_exceptions
    from kfp.registry import RegistryClient

    try:
        # A repository URL makes the client use these credentials (or the application default
        # ones) with the cloud-platform scope, refreshed before the upload.
        client = RegistryClient(host=repository, auth=credentials)
        name, version = client.upload_pipeline(template, tags=tags or None)
    except auth_exceptions.DefaultCredentialsError as e:
        raise AlignPipeError(
            f"no Google Cloud credentials ({e}); run `gcloud auth application-default login`"
        ) from None
    except auth_exceptions.GoogleAuthError as e:  # refresh refused, token endpoint unreachable
        raise AlignPipeError(f"cannot get an access token for Artifact Registry: {e}") from None
    except requests.HTTPError as e:
        answer = e.response.text.strip().replace("\n", " ")[:300]
        raise AlignPipeError(
            f"Artifact Registry refused the template: {e.response.status_code} {e.response.reason}: {answer}"
        ) from None
    except requests.RequestException as e:
        raise AlignPipeError(f"Artifact Registry at {repository} is unreachable: {e}") from None
    except ValueError:  # the answer was not NAME/VERSION
        raise AlignPipeError(f"Artifact Registry at {repository} gave an unexpected answer") from None
    return name, version
