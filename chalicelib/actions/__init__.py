"""The action registry: every action, by its stable name. Complete by construction."""

from __future__ import annotations

from chalicelib.actions.base import Action
from chalicelib.actions.ec2.block_ip import BlockIP
from chalicelib.actions.ec2.capture_memory import CaptureMemory
from chalicelib.actions.ec2.isolate_instance import IsolateInstance
from chalicelib.actions.ec2.isolate_pod_eni import IsolatePodEni
from chalicelib.actions.ec2.protect_instance import ProtectInstance
from chalicelib.actions.ec2.remove_from_service import RemoveFromService
from chalicelib.actions.ec2.scan_for_malware import ScanForMalware
from chalicelib.actions.ec2.snapshot_volumes import SnapshotVolumes
from chalicelib.actions.eks.delete_access_entry import DeleteAccessEntry
from chalicelib.actions.eks.delete_pod_identity import DeletePodIdentityAssociation
from chalicelib.actions.eks.restrict_public_endpoint import RestrictPublicEndpoint
from chalicelib.actions.iam.deactivate_access_keys import DeactivateAccessKeys
from chalicelib.actions.iam.pin_instance_credentials import PinInstanceCredentials
from chalicelib.actions.iam.revoke_role_sessions import RevokeRoleSessions
from chalicelib.actions.k8s.block_image import BlockImage
from chalicelib.actions.k8s.capture_pod import CapturePod
from chalicelib.actions.k8s.cordon_node import CordonNode
from chalicelib.actions.k8s.delete_pod import DeletePod
from chalicelib.actions.k8s.delete_rolebinding import DeleteRoleBinding
from chalicelib.actions.k8s.isolate_pod import IsolatePod
from chalicelib.actions.k8s.label_node import LabelNode
from chalicelib.actions.k8s.label_pod import LabelPod
from chalicelib.actions.kms.cancel_key_deletion import CancelKeyDeletion
from chalicelib.actions.kms.enable_key import EnableKey
from chalicelib.actions.kms.enable_key_rotation import EnableKeyRotation
from chalicelib.actions.kms.restore_key_policy import RestoreKeyPolicy
from chalicelib.actions.kms.revoke_grant import RevokeGrant

_ACTIONS: tuple[type[Action], ...] = (
    LabelPod,
    IsolatePod,
    CapturePod,
    DeletePod,
    CordonNode,
    LabelNode,
    ProtectInstance,
    SnapshotVolumes,
    CaptureMemory,
    IsolateInstance,
    IsolatePodEni,
    RemoveFromService,
    ScanForMalware,
    BlockIP,
    PinInstanceCredentials,
    RevokeRoleSessions,
    DeactivateAccessKeys,
    DeleteAccessEntry,
    DeletePodIdentityAssociation,
    DeleteRoleBinding,
    RestrictPublicEndpoint,
    CancelKeyDeletion,
    EnableKey,
    EnableKeyRotation,
    RestoreKeyPolicy,
    RevokeGrant,
    BlockImage,
)

REGISTRY: dict[str, Action] = {cls.name: cls() for cls in _ACTIONS}


def get(name: str) -> Action:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"unknown action {name!r} (known: {known})") from None
