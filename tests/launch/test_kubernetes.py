"""storage/k8s/: valid Kubernetes (its own schemas, offline) wired the way bsopt needs.

No cluster runs here: kubernetes-validate checks each manifest against the API's JSON schema
(unknown fields refused), and the tests check what the schema cannot know.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from bsopt.cli import build_parser
from bsopt.config import build_config
from tests.helpers import REPO

K8S = REPO / "storage" / "k8s"
KUBERNETES = "1.33.0"  # the oldest with backoffLimitPerIndex generally available


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object in storage/k8s/, by (kind, name)."""
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


OBJECTS = manifests()


def worker_job() -> dict[str, Any]:
    return OBJECTS[("Job", "bsopt-workers")]


@pytest.mark.parametrize("key", sorted(OBJECTS), ids=lambda key: "-".join(key))
def test_each_manifest_is_valid_kubernetes(key: tuple[str, str]) -> None:
    kubernetes_validate.validate(OBJECTS[key], KUBERNETES, strict=True)


def test_the_validation_refuses_what_it_should() -> None:
    # The check above is worth something: a misspelt field is refused.
    job = yaml.safe_load(yaml.safe_dump(worker_job()))
    job["spec"]["parallelizm"] = job["spec"].pop("parallelism")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES, strict=True)


def test_the_workers_are_an_indexed_job_that_retries_lost_pods_not_bad_input() -> None:
    spec = worker_job()["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] >= 2
    assert spec["backoffLimitPerIndex"] >= 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # a new pod per retry (and podFailurePolicy)
    rules = {rule["action"]: rule for rule in spec["podFailurePolicy"]["rules"]}
    assert rules["FailJob"]["onExitCodes"] == {"containerName": "worker", "operator": "In",
                                               "values": [2]}  # bsopt's exit for bad input
    assert rules["Ignore"]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    assert pod["terminationGracePeriodSeconds"] >= 30  # time to give a trial back


def test_each_worker_runs_bsopt_search_on_the_study_with_the_storage_from_the_secret() -> None:
    pod = worker_job()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:2] == ["bsopt", "search"]
    args = build_parser().parse_args(command[1:])  # flags bsopt search takes
    assert args.storage is None  # from $BSOPT_STORAGE, so the password is on no command line
    (storage,) = [e for e in container["env"] if e["name"] == "BSOPT_STORAGE"]
    reference = storage["valueFrom"]["secretKeyRef"]
    assert reference["key"] in OBJECTS[("Secret", reference["name"])]["stringData"]
    # The study file is the ConfigMap's, mounted where the command reads it.
    config = Path(args.config)
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == config.parent]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    study = OBJECTS[("ConfigMap", volume["configMap"]["name"])]["data"][config.name]
    assert "storage" not in study  # the URL only in the Secret
    resources = container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 1


def test_the_study_file_is_a_study_bsopt_accepts(tmp_path: Path) -> None:
    toml = tmp_path / "study.toml"
    toml.write_text(OBJECTS[("ConfigMap", "bsopt-study")]["data"]["study.toml"])
    config, explicit = build_config(toml)
    assert config.name == "mnist-cnn-k8s" and explicit["n_trials"] == config.n_trials


def test_the_storage_url_names_the_postgresql_service_user_database_and_password() -> None:
    secret = OBJECTS[("Secret", "bsopt-storage")]["stringData"]
    url = urlsplit(secret["url"])
    service = OBJECTS[("Service", url.hostname)]
    assert url.scheme == "postgresql" and url.port == service["spec"]["ports"][0]["port"]
    database = OBJECTS[("StatefulSet", url.hostname)]
    assert database["spec"]["serviceName"] == url.hostname
    labels = database["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (postgres,) = database["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in postgres["env"]}
    assert env["POSTGRES_USER"]["value"] == url.username
    assert env["POSTGRES_DB"]["value"] == url.path.lstrip("/")
    password = env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password["name"] == "bsopt-storage" and secret[password["key"]] == url.password
    assert database["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] in {
        m["name"] for m in postgres["volumeMounts"]}


def test_the_kustomization_applies_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert "kubectl apply -k storage/k8s/" in (K8S / "README.md").read_text()
