"""The simulator is a 1.32 cluster to real clients: kubectl api-resources lists exactly what a fresh
1.32 cluster lists, and a smoke of `python -m chaos conformance` (typed kubectl verbs, streams and
two of the official client's e2e tests) passes against the simulator and through guard."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from chaos.conformance import kubectl, pysuites
from chaos.conformance.targets import Target
from tests.conftest import SimServer, have_kubectl

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not have_kubectl(), reason="kubectl is not on PATH")]

# `kubectl api-resources` on a fresh kind cluster of Kubernetes 1.32: name, short names, group/version,
# namespaced, kind.
FRESH_1_32 = """
bindings - v1 true Binding
componentstatuses cs v1 false ComponentStatus
configmaps cm v1 true ConfigMap
endpoints ep v1 true Endpoints
events ev v1 true Event
limitranges limits v1 true LimitRange
namespaces ns v1 false Namespace
nodes no v1 false Node
persistentvolumeclaims pvc v1 true PersistentVolumeClaim
persistentvolumes pv v1 false PersistentVolume
pods po v1 true Pod
podtemplates - v1 true PodTemplate
replicationcontrollers rc v1 true ReplicationController
resourcequotas quota v1 true ResourceQuota
secrets - v1 true Secret
serviceaccounts sa v1 true ServiceAccount
services svc v1 true Service
mutatingwebhookconfigurations - admissionregistration.k8s.io/v1 false MutatingWebhookConfiguration
validatingadmissionpolicies - admissionregistration.k8s.io/v1 false ValidatingAdmissionPolicy
validatingadmissionpolicybindings - admissionregistration.k8s.io/v1 false ValidatingAdmissionPolicyBinding
validatingwebhookconfigurations - admissionregistration.k8s.io/v1 false ValidatingWebhookConfiguration
customresourcedefinitions crd,crds apiextensions.k8s.io/v1 false CustomResourceDefinition
apiservices - apiregistration.k8s.io/v1 false APIService
controllerrevisions - apps/v1 true ControllerRevision
daemonsets ds apps/v1 true DaemonSet
deployments deploy apps/v1 true Deployment
replicasets rs apps/v1 true ReplicaSet
statefulsets sts apps/v1 true StatefulSet
selfsubjectreviews - authentication.k8s.io/v1 false SelfSubjectReview
tokenreviews - authentication.k8s.io/v1 false TokenReview
localsubjectaccessreviews - authorization.k8s.io/v1 true LocalSubjectAccessReview
selfsubjectaccessreviews - authorization.k8s.io/v1 false SelfSubjectAccessReview
selfsubjectrulesreviews - authorization.k8s.io/v1 false SelfSubjectRulesReview
subjectaccessreviews - authorization.k8s.io/v1 false SubjectAccessReview
horizontalpodautoscalers hpa autoscaling/v2 true HorizontalPodAutoscaler
cronjobs cj batch/v1 true CronJob
jobs - batch/v1 true Job
certificatesigningrequests csr certificates.k8s.io/v1 false CertificateSigningRequest
leases - coordination.k8s.io/v1 true Lease
endpointslices - discovery.k8s.io/v1 true EndpointSlice
events ev events.k8s.io/v1 true Event
flowschemas - flowcontrol.apiserver.k8s.io/v1 false FlowSchema
prioritylevelconfigurations - flowcontrol.apiserver.k8s.io/v1 false PriorityLevelConfiguration
ingressclasses - networking.k8s.io/v1 false IngressClass
ingresses ing networking.k8s.io/v1 true Ingress
networkpolicies netpol networking.k8s.io/v1 true NetworkPolicy
runtimeclasses - node.k8s.io/v1 false RuntimeClass
poddisruptionbudgets pdb policy/v1 true PodDisruptionBudget
clusterrolebindings - rbac.authorization.k8s.io/v1 false ClusterRoleBinding
clusterroles - rbac.authorization.k8s.io/v1 false ClusterRole
rolebindings - rbac.authorization.k8s.io/v1 true RoleBinding
roles - rbac.authorization.k8s.io/v1 true Role
priorityclasses pc scheduling.k8s.io/v1 false PriorityClass
csidrivers - storage.k8s.io/v1 false CSIDriver
csinodes - storage.k8s.io/v1 false CSINode
csistoragecapacities - storage.k8s.io/v1 true CSIStorageCapacity
storageclasses sc storage.k8s.io/v1 false StorageClass
volumeattachments - storage.k8s.io/v1 false VolumeAttachment
"""


def _rows(text: str) -> set[tuple[str, ...]]:
    rows = set()
    for line in text.strip().splitlines():
        words = line.split()
        if len(words) == 4:  # kubectl leaves SHORTNAMES blank
            words.insert(1, "-")
        rows.add(tuple(words))
    return rows


def test_api_resources_match_a_fresh_1_32_cluster(sim_server: Callable[..., SimServer]) -> None:
    """Same names, short names, versions, scopes and kinds — no more, no fewer (58)."""
    listed = sim_server(tls=True).kubectl("api-resources", "--no-headers")
    assert listed.returncode == 0, listed.stderr
    assert _rows(listed.stdout) == _rows(FRESH_1_32) and len(_rows(FRESH_1_32)) == 58


@pytest.mark.parametrize("kind", ["sim", "guard"])
def test_conformance_smoke(kind: str, tmp_path: Path) -> None:
    """Typed creates (protobuf bodies), wait/rollout, exec, cp and port-forward, and two official e2e
    tests pass against the simulator and through guard."""
    with Target(kind, tmp_path / kind) as target:
        checks = (
            "create configmap",
            "create deployment",
            "create role",
            "create service",
            "create token",
            "wait + rollout",
            "exec exit code",
            "cp",
            "port-forward",
        )
        runner = kubectl.Runner("kubectl", target)
        failures = []
        for name, check in kubectl.checks("1.32"):
            if name.startswith(checks):
                try:
                    check(runner)
                except (kubectl.CheckFailed, subprocess.TimeoutExpired) as e:
                    failures.append(f"{name}: {e}")
        assert failures == []
        source = pysuites.find_e2e(Path(__file__).resolve().parent)
        if source is None:
            pytest.skip("../shared/conformance is not here: the official e2e part is skipped")
        result = pysuites.official(
            source, target, asyncio=False, only="test_create_deployment or test_job_apis"
        )
        assert result.passed >= 2 and (result.failed, result.errors, result.failures) == (0, 0, ())
