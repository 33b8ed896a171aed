"""Every GuardDuty finding type the responder knows about EKS, with where it appears.

Written from GuardDuty's documented finding types (EKS Protection, Runtime Monitoring, Malware
Protection for EC2, Extended Threat Detection, IAM) and kept as data: a test replays each type on
each resource it can name and fails when one reaches a fallback rule, and the documentation's
table of types and playbooks is generated from this list and the rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.incident import ResourceKind

_POD = (ResourceKind.POD, ResourceKind.WORKLOAD)
_CALLER = (ResourceKind.CLUSTER, ResourceKind.POD, ResourceKind.WORKLOAD)  # an API caller; a workload if named
_CLUSTER = (ResourceKind.CLUSTER,)
_RUNTIME = (ResourceKind.POD, ResourceKind.WORKLOAD, ResourceKind.NODE)
_NODE = (ResourceKind.NODE,)
_KEY = (ResourceKind.ACCESS_KEY,)


@dataclass(frozen=True)
class FindingType:
    name: str
    severity: str  # GuardDuty's default: low, medium, high, critical, or variable (depends on the finding)
    appears_on: tuple[ResourceKind, ...]  # what a finding of this type can name
    source: str  # the GuardDuty feature that reports it
    retired: bool = False  # no longer generated, still handled when an old finding is replayed

    @property
    def tactic(self) -> str:
        return self.name.split(":", 1)[0]


def _audit(name: str, severity: str, on: tuple[ResourceKind, ...] = _CALLER) -> FindingType:
    return FindingType(name, severity, on, "EKS audit logs")


def _runtime(name: str, severity: str, on: tuple[ResourceKind, ...] = _RUNTIME) -> FindingType:
    return FindingType(name, severity, on, "Runtime Monitoring")


_CALLER_FAMILIES = ("CredentialAccess", "DefenseEvasion", "Discovery", "Impact", "Persistence")
_CALLER_SEVERITY = {"CredentialAccess": "high", "DefenseEvasion": "high", "Discovery": "medium",
                    "Impact": "high", "Persistence": "medium"}  # fmt: skip

KNOWN: tuple[FindingType, ...] = (
    # EKS audit logs: a caller from a known-bad address or Tor, or anonymous
    *(
        _audit(f"{tactic}:Kubernetes/{suffix}", _CALLER_SEVERITY[tactic])
        for tactic in _CALLER_FAMILIES
        for suffix in ("MaliciousIPCaller", "MaliciousIPCaller.Custom", "TorIPCaller")
    ),
    *(
        _audit(f"{tactic}:Kubernetes/SuccessfulAnonymousAccess", "medium" if tactic == "Discovery" else "high")
        for tactic in _CALLER_FAMILIES
    ),
    # EKS audit logs: anomalous behaviour of a known caller
    _audit("CredentialAccess:Kubernetes/AnomalousBehavior.SecretsAccessed", "medium"),
    _audit("Discovery:Kubernetes/AnomalousBehavior.PermissionChecked", "low"),
    _audit("PrivilegeEscalation:Kubernetes/AnomalousBehavior.RoleBindingCreated", "medium"),
    _audit("PrivilegeEscalation:Kubernetes/AnomalousBehavior.RoleCreated", "low"),
    _audit("Execution:Kubernetes/AnomalousBehavior.ExecInPod", "medium", _POD),
    _audit("Execution:Kubernetes/AnomalousBehavior.WorkloadDeployed", "low", _POD),
    _audit("Persistence:Kubernetes/AnomalousBehavior.WorkloadDeployed!ContainerWithSensitiveMount", "high", _POD),
    _audit(
        "PrivilegeEscalation:Kubernetes/AnomalousBehavior.WorkloadDeployed!ContainerWithSensitiveMount", "high", _POD
    ),
    _audit("PrivilegeEscalation:Kubernetes/AnomalousBehavior.WorkloadDeployed!PrivilegedContainer", "high", _POD),
    # EKS audit logs: workloads and configuration
    _audit("Execution:Kubernetes/ExecInKubeSystemPod", "medium", _POD),
    _audit("Persistence:Kubernetes/ContainerWithSensitiveMount", "medium", _POD),
    _audit("PrivilegeEscalation:Kubernetes/PrivilegedContainer", "medium", _POD),
    _audit("Policy:Kubernetes/AdminAccessToDefaultServiceAccount", "high", _CLUSTER),
    _audit("Policy:Kubernetes/AnonymousAccessGranted", "high", _CLUSTER),
    _audit("Policy:Kubernetes/ExposedDashboard", "medium", _CLUSTER),
    _audit("Policy:Kubernetes/KubeflowDashboardExposed", "medium", _CLUSTER),
    # Malware Protection for EC2 (a scan of a worker node's volumes)
    FindingType("Execution:Kubernetes/MaliciousFile", "variable", _NODE, "Malware Protection for EC2"),
    FindingType("Execution:Kubernetes/SuspiciousFile", "variable", _NODE, "Malware Protection for EC2"),
    FindingType("Execution:EC2/MaliciousFile", "variable", _NODE, "Malware Protection for EC2"),
    FindingType("Execution:EC2/SuspiciousFile", "variable", _NODE, "Malware Protection for EC2"),
    # Runtime Monitoring: in a container (pod) or on the node itself
    _runtime("Backdoor:Runtime/C&CActivity.B", "high"),
    _runtime("Backdoor:Runtime/C&CActivity.B!DNS", "high"),
    _runtime("CryptoCurrency:Runtime/BitcoinTool.B", "high"),
    _runtime("CryptoCurrency:Runtime/BitcoinTool.B!DNS", "high"),
    _runtime("DefenseEvasion:Runtime/FilelessExecution", "medium"),
    _runtime("DefenseEvasion:Runtime/KernelModuleLoaded", "high"),
    _runtime("DefenseEvasion:Runtime/ProcessInjection.Proc", "high"),
    _runtime("DefenseEvasion:Runtime/ProcessInjection.Ptrace", "medium"),
    _runtime("DefenseEvasion:Runtime/ProcessInjection.VirtualMemoryWrite", "high"),
    _runtime("DefenseEvasion:Runtime/PtraceAntiDebugging", "low"),
    _runtime("DefenseEvasion:Runtime/SuspiciousCommand", "variable"),
    _runtime("DefenseEvasion:Runtime/SensitiveFileModified", "variable"),
    _runtime("Discovery:Runtime/SuspiciousCommand", "low"),
    _runtime("Execution:Runtime/MaliciousFileExecuted", "high"),
    _runtime("Execution:Runtime/MaliciousFileExecuted.Custom", "variable"),
    _runtime("Execution:Runtime/NewBinaryExecuted", "medium"),
    _runtime("Execution:Runtime/NewLibraryLoaded", "medium"),
    _runtime("Execution:Runtime/ReverseShell", "high"),
    _runtime("Execution:Runtime/SuspiciousCommand", "variable"),
    _runtime("Execution:Runtime/SuspiciousShellCreated", "low"),
    _runtime("Execution:Runtime/SuspiciousTool", "variable"),
    _runtime("Impact:Runtime/AbusedDomainRequest.Reputation", "medium"),
    _runtime("Impact:Runtime/BitcoinDomainRequest.Reputation", "high"),
    _runtime("Impact:Runtime/CryptoMinerExecuted", "high"),
    _runtime("Impact:Runtime/MaliciousDomainRequest.Reputation", "high"),
    _runtime("Impact:Runtime/SuspiciousDomainRequest.Reputation", "low"),
    _runtime("Persistence:Runtime/SuspiciousCommand", "medium"),
    _runtime("Persistence:Runtime/SensitiveFileModified", "variable"),
    _runtime("PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified", "high"),
    _runtime("PrivilegeEscalation:Runtime/ContainerMountsHostDirectory", "medium"),
    _runtime("PrivilegeEscalation:Runtime/DockerSocketAccessed", "medium"),
    _runtime("PrivilegeEscalation:Runtime/ElevationToRoot", "medium"),
    _runtime("PrivilegeEscalation:Runtime/RuncContainerEscape", "high"),
    _runtime("PrivilegeEscalation:Runtime/SensitiveFileModified", "variable"),
    _runtime("PrivilegeEscalation:Runtime/SuspiciousCommand", "medium"),
    _runtime("PrivilegeEscalation:Runtime/UserfaultfdUsage", "medium"),
    _runtime("Trojan:Runtime/BlackholeTraffic", "medium"),
    _runtime("Trojan:Runtime/BlackholeTraffic!DNS", "medium"),
    _runtime("Trojan:Runtime/DGADomainRequest.C!DNS", "high"),
    _runtime("Trojan:Runtime/DriveBySourceTraffic!DNS", "high"),
    _runtime("Trojan:Runtime/DropPoint", "medium"),
    _runtime("Trojan:Runtime/DropPoint!DNS", "medium"),
    _runtime("Trojan:Runtime/PhishingDomainRequest!DNS", "high"),
    _runtime("UnauthorizedAccess:Runtime/MetadataDNSRebind", "high"),
    _runtime("UnauthorizedAccess:Runtime/TorClient", "high"),
    _runtime("UnauthorizedAccess:Runtime/TorRelay", "high"),
    # Extended Threat Detection: the cluster, or an instance group of worker nodes
    FindingType(
        "AttackSequence:EKS/CompromisedCluster", "critical", (*_CALLER, ResourceKind.NODE), "Extended Threat Detection"
    ),
    FindingType("AttackSequence:EC2/CompromisedInstanceGroup", "critical", _NODE, "Extended Threat Detection"),
    # Instance credentials used from elsewhere (a node's role)
    FindingType("UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS", "high", _KEY, "CloudTrail"),
    FindingType("UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.InsideAWS", "high", _KEY, "CloudTrail"),
    FindingType("UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration", "high", _KEY, "CloudTrail", retired=True),
    # EC2 findings on an instance that is a worker node
    *(
        FindingType(name, severity, _NODE, "EC2 (VPC flow logs, DNS)")
        for name, severity in (
            ("Backdoor:EC2/C&CActivity.B", "high"),
            ("Backdoor:EC2/C&CActivity.B!DNS", "high"),
            ("Backdoor:EC2/DenialOfService.Tcp", "high"),
            ("CryptoCurrency:EC2/BitcoinTool.B", "high"),
            ("CryptoCurrency:EC2/BitcoinTool.B!DNS", "high"),
            ("Impact:EC2/MaliciousDomainRequest.Reputation", "high"),
            ("Recon:EC2/Portscan", "medium"),
            ("Trojan:EC2/DropPoint", "medium"),
            ("UnauthorizedAccess:EC2/MetadataDNSRebind", "high"),
            ("UnauthorizedAccess:EC2/TorClient", "high"),
        )
    ),
)

BY_NAME = {t.name: t for t in KNOWN}
