"""GuardDuty findings for EKS: EventBridge "GuardDuty Finding" events -> Incident.

Formats: https://docs.aws.amazon.com/guardduty/latest/ug/guardduty_findings.html and the
GuardDuty API model. Every field is optional here because GuardDuty leaves out or nulls
whatever does not apply; only the fields an incident cannot do without are required.
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta, field

from chalicelib.errors import EventError
from chalicelib.incident import (
    ApiCall,
    Incident,
    PodRef,
    Principal,
    PrincipalKind,
    PrincipalRole,
    ResourceKind,
    Severity,
    WorkloadRef,
    principal_from_arn,
    timestamp,
)
from chalicelib.validation import Lenient, ValidationError, describe, parse

SOURCE = "guardduty"


class TagModel(Lenient, frozen=True):
    key: str | None = None
    value: str | None = None


class EKSClusterDetailsModel(Lenient, frozen=True):
    name: str | None = None
    arn: str | None = None
    vpc_id: str | None = field(default=None, name="vpcId")
    tags: list[TagModel] | None = None


class SecurityContextModel(Lenient, frozen=True):
    privileged: bool | None = None
    allow_privilege_escalation: bool | None = field(default=None, name="allowPrivilegeEscalation")


class VolumeMountModel(Lenient, frozen=True):
    name: str | None = None
    mount_path: str | None = field(default=None, name="mountPath")


class ContainerModel(Lenient, frozen=True):
    id: str | None = None
    name: str | None = None
    image: str | None = None
    image_prefix: str | None = field(default=None, name="imagePrefix")
    security_context: SecurityContextModel | None = field(default=None, name="securityContext")
    volume_mounts: list[VolumeMountModel] | None = field(default=None, name="volumeMounts")


class HostPathModel(Lenient, frozen=True):
    path: str | None = None


class VolumeModel(Lenient, frozen=True):
    name: str | None = None
    host_path: HostPathModel | None = field(default=None, name="hostPath")


class KubernetesWorkloadDetailsModel(Lenient, frozen=True, kw_only=True):
    # GuardDuty always names the workload it reports: a workload without name, namespace or type
    # is malformed, and acting on what remains (the node it ran on) would let its absence decide.
    name: str
    type: str
    uid: str | None = None
    namespace: str
    host_network: bool | None = field(default=None, name="hostNetwork")
    host_ipc: bool | None = field(default=None, name="hostIPC")
    host_pid: bool | None = field(default=None, name="hostPID")
    service_account_name: str | None = field(default=None, name="serviceAccountName")
    containers: list[ContainerModel] | None = None
    volumes: list[VolumeModel] | None = None


class KubernetesUserDetailsModel(Lenient, frozen=True):
    username: str | None = None
    uid: str | None = None
    groups: list[str] | None = None


class KubernetesDetailsModel(Lenient, frozen=True):
    user: KubernetesUserDetailsModel | None = field(default=None, name="kubernetesUserDetails")
    workload: KubernetesWorkloadDetailsModel | None = field(default=None, name="kubernetesWorkloadDetails")


class AccessKeyDetailsModel(Lenient, frozen=True):
    access_key_id: str | None = field(default=None, name="accessKeyId")
    principal_id: str | None = field(default=None, name="principalId")
    user_type: str | None = field(default=None, name="userType")
    user_name: str | None = field(default=None, name="userName")


class InstanceProfileModel(Lenient, frozen=True):
    arn: str | None = None
    id: str | None = None


class InstanceDetailsModel(Lenient, frozen=True):
    instance_id: str | None = field(default=None, name="instanceId")
    iam_instance_profile: InstanceProfileModel | None = field(default=None, name="iamInstanceProfile")
    tags: list[TagModel] | None = None


class ResourceModel(Lenient, frozen=True):
    resource_type: str = field(name="resourceType")
    eks_cluster_details: EKSClusterDetailsModel | None = field(default=None, name="eksClusterDetails")
    kubernetes_details: KubernetesDetailsModel | None = field(default=None, name="kubernetesDetails")
    access_key_details: AccessKeyDetailsModel | None = field(default=None, name="accessKeyDetails")
    instance_details: InstanceDetailsModel | None = field(default=None, name="instanceDetails")
    container_details: ContainerModel | None = field(default=None, name="containerDetails")


class RemoteIpDetailsModel(Lenient, frozen=True):
    ip_address_v4: str | None = field(default=None, name="ipAddressV4")
    ip_address_v6: str | None = field(default=None, name="ipAddressV6")


class KubernetesApiCallActionModel(Lenient, frozen=True):
    verb: str | None = None
    request_uri: str | None = field(default=None, name="requestUri")
    namespace: str | None = None
    resource: str | None = None
    resource_name: str | None = field(default=None, name="resourceName")
    source_ips: list[str] | None = field(default=None, name="sourceIPs")
    remote_ip_details: RemoteIpDetailsModel | None = field(default=None, name="remoteIpDetails")


class NetworkConnectionActionModel(Lenient, frozen=True):
    remote_ip_details: RemoteIpDetailsModel | None = field(default=None, name="remoteIpDetails")


class AwsApiCallActionModel(Lenient, frozen=True):
    api: str | None = None
    remote_ip_details: RemoteIpDetailsModel | None = field(default=None, name="remoteIpDetails")


class ActionModel(Lenient, frozen=True):
    action_type: str | None = field(default=None, name="actionType")
    kubernetes_api_call: KubernetesApiCallActionModel | None = field(default=None, name="kubernetesApiCallAction")
    network_connection: NetworkConnectionActionModel | None = field(default=None, name="networkConnectionAction")
    aws_api_call: AwsApiCallActionModel | None = field(default=None, name="awsApiCallAction")


class SequenceWorkloadModel(Lenient, frozen=True):
    namespace: str | None = None
    type: str | None = None


class SequenceResourceDataModel(Lenient, frozen=True):
    kubernetes_workload: SequenceWorkloadModel | None = field(default=None, name="kubernetesWorkload")


class SequenceResourceModel(Lenient, frozen=True):
    uid: str | None = None
    name: str | None = None
    resource_type: str | None = field(default=None, name="resourceType")
    data: SequenceResourceDataModel | None = None
    tags: list[TagModel] | None = None


class SequenceModel(Lenient, frozen=True):
    uid: str | None = None
    description: str | None = None
    resources: list[SequenceResourceModel] | None = None


class DetectionModel(Lenient, frozen=True):
    sequence: SequenceModel | None = None


class RuntimeProcessModel(Lenient, frozen=True):
    name: str | None = None
    executable_path: str | None = field(default=None, name="executablePath")


class RuntimeContextModel(Lenient, frozen=True):
    file_operation: str | None = field(default=None, name="fileOperation")
    file_path: str | None = field(default=None, name="filePath")
    # the file a process wrote, ran or loaded: newer Runtime types name it in one of these
    modified_path: str | None = field(default=None, name="scriptPath")
    library_path: str | None = field(default=None, name="libraryPath")


class RuntimeDetailsModel(Lenient, frozen=True):
    process: RuntimeProcessModel | None = None
    context: RuntimeContextModel | None = None


class ServiceModel(Lenient, frozen=True):
    action: ActionModel | None = None
    runtime_details: RuntimeDetailsModel | None = field(default=None, name="runtimeDetails")
    additional_info: dict[str, Any] | None = field(default=None, name="additionalInfo")
    count: int | None = None
    archived: bool | None = None
    feature_name: str | None = field(default=None, name="featureName")
    detection: DetectionModel | None = None


class GuardDutyFindingModel(Lenient, frozen=True, kw_only=True):
    """The `detail` of a "GuardDuty Finding" event (camelCase, as EventBridge sends it)."""

    id: Annotated[str, Meta(min_length=1)]
    type: Annotated[str, Meta(min_length=3)]
    account_id: str = field(name="accountId")
    region: str
    severity: Annotated[float, Meta(ge=0, le=10)]
    arn: str | None = None
    title: str | None = None
    description: str | None = None
    updated_at: str | None = field(default=None, name="updatedAt")
    resource: ResourceModel
    service: ServiceModel | None = None


class GuardDutyEventModel(Lenient, frozen=True, kw_only=True):
    """The EventBridge envelope around a GuardDuty finding."""

    id: str | None = None
    source: str
    detail_type: str = field(name="detail-type")
    account: str | None = None
    region: str | None = None
    detail: GuardDutyFindingModel


# GuardDuty names workloads by their API resource (plural, lower case).
_WORKLOAD_KINDS = {
    "pods": "Pod",
    "pod": "Pod",
    "deployments": "Deployment",
    "deployment": "Deployment",
    "replicasets": "ReplicaSet",
    "replicaset": "ReplicaSet",
    "daemonsets": "DaemonSet",
    "daemonset": "DaemonSet",
    "statefulsets": "StatefulSet",
    "statefulset": "StatefulSet",
    "jobs": "Job",
    "job": "Job",
    "cronjobs": "CronJob",
    "cronjob": "CronJob",
    "replicationcontrollers": "ReplicationController",
}

# Host paths whose mount gives a container the node (GuardDuty's ContainerWithSensitiveMount).
_SENSITIVE_HOST_PATHS = ("/", "/etc", "/var/run/docker.sock", "/run/containerd", "/proc", "/root", "/var/lib/kubelet")


def parse_event(event: dict[str, Any]) -> GuardDutyEventModel:
    """Validate an EventBridge GuardDuty event; raise EventError saying what is wrong."""
    try:
        return parse(event, GuardDutyEventModel)
    except ValidationError as exc:
        raise EventError(f"not a valid GuardDuty finding event: {describe(exc)}") from None


def to_incident(event: dict[str, Any], raw_ref: str | None = None) -> Incident:
    """Parse and normalise one GuardDuty EventBridge event."""
    model = parse_event(event)
    if model.source != "aws.guardduty" or model.detail_type != "GuardDuty Finding":
        raise EventError(f"not a GuardDuty finding: source={model.source!r} detail-type={model.detail_type!r}")
    finding = model.detail
    resource = finding.resource
    kube = resource.kubernetes_details
    workload = kube.workload if kube else None
    instance = resource.instance_details

    workloads, pods = _workloads(workload, finding)
    namespace = workloads[0].namespace if workloads else _api_namespace(finding)
    cluster = _cluster(resource)
    grouped = _sequence_clusters(finding) if cluster is None else {}
    if cluster is None and len(set(grouped.values())) == 1:
        # an instance group's sequence (not an EKS one) names worker nodes of one cluster
        cluster = next(iter(grouped.values()))
    instance_ids = _instance_ids(instance, finding, cluster if grouped else None, grouped)
    additional = finding.service.additional_info if finding.service and finding.service.additional_info else {}
    if "sample" in additional and not isinstance(additional["sample"], bool):
        # It decides whether anything is changed: only the documented boolean is believed.
        raise EventError(f"service.additionalInfo.sample is {type(additional['sample']).__name__}, not true or false")

    return Incident(
        id=finding.id,
        source=SOURCE,
        type=finding.type,
        title=finding.title or finding.type,
        severity=Severity.from_score(finding.severity),
        score=finding.severity,
        account=finding.account_id,
        region=finding.region,
        resource_kind=_resource_kind(resource, workloads, pods, instance_ids),
        cluster=cluster,
        namespace=namespace,
        workloads=tuple(workloads),
        pods=tuple(pods),
        nodes=(),
        instance_ids=tuple(instance_ids),
        principals=tuple(_principals(resource, finding.account_id)),
        images=tuple(_images(resource)),
        remote_ips=tuple(_remote_ips(finding)),
        privileged=_privileged(finding.type, workload, resource.container_details),
        sample=additional.get("sample") is True,
        event_id=model.id,
        raw_ref=raw_ref or finding.arn,
        finding_arn=finding.arn,
        count=(finding.service.count if finding.service and finding.service.count else 1),
        api_call=_api_call(finding),
        details=_details(finding, grouped),
        observed_at=timestamp(finding.updated_at),
    )


DETAIL_LIMIT = 512  # characters kept of a path or command from the finding (shown, never acted on)


def _details(finding: GuardDutyFindingModel, grouped: dict[str, str]) -> dict[str, str]:
    """What a message should show: the file and process of a Runtime finding, the clusters of an
    instance group. Text from the finding, kept as text."""
    found: dict[str, str] = {}
    runtime = finding.service.runtime_details if finding.service else None
    context = runtime.context if runtime else None
    for key, value in (
        ("file_path", context.file_path if context else None),
        ("file_operation", context.file_operation if context else None),
        ("library_path", context.library_path if context else None),
        ("script_path", context.modified_path if context else None),
        ("process", runtime.process.executable_path or runtime.process.name if runtime and runtime.process else None),
    ):
        if value:
            found[key] = value[:DETAIL_LIMIT]
    if len(set(grouped.values())) > 1:
        found["clusters"] = ",".join(sorted(set(grouped.values())))
    return found


def _workloads(
    workload: KubernetesWorkloadDetailsModel | None, finding: GuardDutyFindingModel
) -> tuple[list[WorkloadRef], list[PodRef]]:
    refs: list[WorkloadRef] = []
    if workload and workload.name and workload.namespace:
        kind = _WORKLOAD_KINDS.get((workload.type or "").lower(), "Pod" if not workload.type else "")
        refs.append(WorkloadRef(kind or workload.type or "Pod", workload.namespace, workload.name))
    sequence = finding.service.detection.sequence if finding.service and finding.service.detection else None
    for res in (sequence.resources or []) if sequence else []:
        data = res.data.kubernetes_workload if res.data else None
        # A sequence resource without a type names no known kind: guessing "Pod" would aim the
        # pod playbook at whatever the name says.
        if data and data.namespace and res.name and data.type:
            kind = _WORKLOAD_KINDS.get(data.type.lower(), data.type)
            ref = WorkloadRef(kind, data.namespace, res.name)
            if ref not in refs:
                refs.append(ref)
    pods = [PodRef(w.namespace, w.name) for w in refs if w.kind == "Pod"]
    return refs, pods


def _api_call(finding: GuardDutyFindingModel) -> ApiCall | None:
    action = finding.service.action if finding.service else None
    call = action.kubernetes_api_call if action else None
    if call is None:
        return None
    resource, name, namespace = call.resource, call.resource_name, call.namespace
    # Older findings carry only the request URI: /apis/<group>/<version>/[namespaces/<ns>/]<resource>[/<name>]
    parts = [p for p in (call.request_uri or "").split("?", 1)[0].split("/") if p]
    if resource is None and len(parts) >= 3:  # noqa: PLR2004
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        if len(rest) >= 2 and rest[0] == "namespaces":  # noqa: PLR2004
            namespace, rest = rest[1], rest[2:]
        if rest:
            resource = rest[0]
            name = rest[1] if len(rest) > 1 else None
    return ApiCall(call.verb, resource, name, namespace)


def _api_namespace(finding: GuardDutyFindingModel) -> str | None:
    action = finding.service.action if finding.service else None
    call = action.kubernetes_api_call if action else None
    return call.namespace if call else None


def _sequence_resources(finding: GuardDutyFindingModel) -> list[SequenceResourceModel]:
    sequence = finding.service.detection.sequence if finding.service and finding.service.detection else None
    return list(sequence.resources or []) if sequence else []


def _is_instance(res: SequenceResourceModel) -> bool:
    return (res.resource_type or "").lower() in {"ec2instance", "instance"} and bool(res.uid)


def _sequence_clusters(finding: GuardDutyFindingModel) -> dict[str, str]:
    """instance id -> the EKS cluster its tags name, for the instances of an attack sequence."""
    found = {}
    for res in _sequence_resources(finding):
        cluster = next((t.value for t in res.tags or [] if t.key == "eks:cluster-name" and t.value), None)
        if _is_instance(res) and cluster and res.uid:
            found[res.uid] = cluster
    return found


def _instance_ids(
    instance: InstanceDetailsModel | None, finding: GuardDutyFindingModel, cluster: str | None, grouped: dict[str, str]
) -> list[str]:
    """The finding's instance, and a sequence's: of an instance group, only those tagged as
    worker nodes of the one cluster the incident is about (the others are not EKS's to touch)."""
    ids: list[str] = []
    if instance and instance.instance_id:
        ids.append(instance.instance_id)
    for res in _sequence_resources(finding):
        if _is_instance(res) and res.uid and res.uid not in ids and (not grouped or grouped.get(res.uid) == cluster):
            ids.append(res.uid)
    return ids


def _cluster(resource: ResourceModel) -> str | None:
    if resource.eks_cluster_details and resource.eks_cluster_details.name:
        return resource.eks_cluster_details.name
    # A worker node names its cluster in its tags (EKS conventions, not the finding schema).
    tags = resource.instance_details.tags if resource.instance_details else None
    for tag in tags or []:
        if tag.key == "eks:cluster-name" and tag.value:
            return tag.value
        if tag.key and tag.key.startswith("kubernetes.io/cluster/"):
            return tag.key.removeprefix("kubernetes.io/cluster/")
    return None


def _resource_kind(  # noqa: PLR0911 - one return per kind reads best
    resource: ResourceModel, workloads: list[WorkloadRef], pods: list[PodRef], instance_ids: list[str]
) -> ResourceKind:
    rtype = resource.resource_type
    if rtype == "AccessKey":
        return ResourceKind.ACCESS_KEY
    if rtype == "Instance" or (instance_ids and not workloads and rtype not in {"EKSCluster", "Container"}):
        return ResourceKind.NODE  # an instance, or a sequence over an instance group
    if rtype in {"EKSCluster", "Container"}:
        if pods:
            return ResourceKind.POD
        if workloads:
            return ResourceKind.WORKLOAD
        if instance_ids:
            return ResourceKind.NODE
        return ResourceKind.CLUSTER
    return ResourceKind.OTHER


def _principals(resource: ResourceModel, account: str) -> list[Principal]:
    found: list[Principal] = []
    user = resource.kubernetes_details.user if resource.kubernetes_details else None
    if user and user.username:
        groups = tuple(user.groups or ())
        name = user.username
        from_arn = principal_from_arn(name, PrincipalRole.CALLER, groups) if name.startswith("arn:aws") else None
        if name == "system:anonymous" or "system:unauthenticated" in groups:
            found.append(Principal(PrincipalKind.ANONYMOUS, name, groups=groups))
        elif name.startswith("system:serviceaccount:"):
            found.append(Principal(PrincipalKind.SERVICE_ACCOUNT, name, groups=groups))
        elif from_arn is not None:
            found.append(from_arn)
        else:
            found.append(Principal(PrincipalKind.KUBERNETES_USER, name, groups=groups))
    key = resource.access_key_details
    if key and key.user_name:
        # Instance credentials are role credentials, whatever the sample's userType says.
        is_user = key.user_type == "IAMUser" and not resource.instance_details
        involved = PrincipalRole.CALLER if resource.resource_type == "EKSCluster" else PrincipalRole.CREDENTIALS
        kind = PrincipalKind.IAM_USER if is_user else PrincipalKind.IAM_ROLE
        arn = f"arn:aws:iam::{account}:{'user' if is_user else 'role'}/{key.user_name}"
        principal = Principal(kind, key.user_name, arn, (), involved, key.access_key_id)
        if not any(p.arn == arn for p in found):
            found.append(principal)
    workload = resource.kubernetes_details.workload if resource.kubernetes_details else None
    if workload and workload.namespace and workload.service_account_name:
        account_name = f"system:serviceaccount:{workload.namespace}:{workload.service_account_name}"
        found.append(Principal(PrincipalKind.SERVICE_ACCOUNT, account_name, involved_as=PrincipalRole.WORKLOAD))
    profile = resource.instance_details.iam_instance_profile if resource.instance_details else None
    if profile and profile.arn and resource.resource_type == "Instance":
        profile_name = profile.arn.rsplit("/", 1)[-1]
        found.append(Principal(PrincipalKind.INSTANCE_PROFILE, profile_name, profile.arn, (), PrincipalRole.NODE))
    return found


def _images(resource: ResourceModel) -> list[str]:
    containers = (
        list(resource.kubernetes_details.workload.containers or [])
        if (resource.kubernetes_details and resource.kubernetes_details.workload)
        else []
    )
    if resource.container_details:
        containers.append(resource.container_details)
    images: list[str] = []
    for c in containers:
        if c.image and c.image not in images:
            images.append(c.image)
    return images


def _remote_ips(finding: GuardDutyFindingModel) -> list[str]:
    action = finding.service.action if finding.service else None
    if not action:
        return []
    details = [
        a.remote_ip_details
        for a in (action.kubernetes_api_call, action.network_connection, action.aws_api_call)
        if a is not None and a.remote_ip_details is not None
    ]
    ips: list[str] = []
    for d in details:
        for ip in (d.ip_address_v4, d.ip_address_v6):
            if ip and ip not in ips:
                ips.append(ip)
    return ips


# GuardDuty's own verdict that the workload reaches the node.
_NODE_LEVEL_TYPES = ("PrivilegedContainer", "ContainerWithSensitiveMount", "ContainerMountsHostDirectory")


def _privileged(
    finding_type: str, workload: KubernetesWorkloadDetailsModel | None, container: ContainerModel | None
) -> bool:
    if any(marker in finding_type for marker in _NODE_LEVEL_TYPES):
        return True
    containers = list(workload.containers or []) if workload else []
    if container:
        containers.append(container)
    if any(c.security_context and c.security_context.privileged for c in containers):
        return True
    if workload and (workload.host_pid or workload.host_ipc):
        return True
    sensitive = {p.rstrip("/") for p in _SENSITIVE_HOST_PATHS}
    volumes = (workload.volumes or []) if workload else []
    return any(v.host_path and v.host_path.path and v.host_path.path.rstrip("/") in sensitive for v in volumes)
