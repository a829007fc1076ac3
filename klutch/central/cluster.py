"""Layer 2: the Kubernetes cluster every later layer deploys to.

`mode: eks` builds an EKS control plane (pulumi_eks) in the network's private subnets with
API authentication mode, admin access entries, an OIDC provider, restricted public endpoint,
control-plane logging and envelope encryption of Secrets with a KMS key made here, plus a managed
node group (plain pulumi_aws: IMDSv2 required, private subnets, encrypted gp3 disks).
`mode: existing` creates no AWS resource: the cluster is given by a kubeconfig.

Both modes expose the same interface: `provider` (the explicit Kubernetes provider — no
Kubernetes resource may use the default one), `api_server_url` (what tenants reach),
`ca_pem` (the cluster CA as PEM), `kubeconfig` (secret) and `name`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from klutch.config.central import ClusterConfig
from klutch.config.kubeconfig import parse_kubeconfig

ADMIN_POLICY_ARN = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
NODE_POLICIES = {
    "worker": "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "cni": "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "ecr": "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
}
NODE_ASSUME_ROLE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


@dataclass(frozen=True)
class ClusterArgs:
    config: ClusterConfig
    protect: bool
    tags: Mapping[str, str]
    vpc_id: pulumi.Input[str] | None = None
    public_subnet_ids: Sequence[pulumi.Input[str]] = ()
    private_subnet_ids: Sequence[pulumi.Input[str]] = ()


class Cluster(pulumi.ComponentResource):
    provider: k8s.Provider
    api_server_url: pulumi.Output[str]
    ca_pem: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    name: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str] | None  # EKS: the IAM OIDC provider for IRSA roles

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("klutch:cluster:Cluster", name, None, opts)
        cfg = args.config
        self.oidc_provider_arn = None
        if cfg.mode == "eks":
            kubeconfig, ready = self._eks(name, args)
            self.name = pulumi.Output.from_input(cfg.name)
        else:
            kubeconfig, ready = cfg.kubeconfig.output(), []
            # the context's name is no secret, the kubeconfig it comes from is
            self.name = pulumi.Output.unsecret(kubeconfig.apply(lambda text: parse_kubeconfig(text).context))
        self.kubeconfig = pulumi.Output.secret(kubeconfig)
        facts = self.kubeconfig.apply(parse_kubeconfig)
        # The CA certificate and the API address are public facts: unwrap them from the secret.
        self.api_server_url = pulumi.Output.unsecret(facts.apply(lambda f: cfg.api_server_url or f.server))
        self.ca_pem = pulumi.Output.unsecret(facts.apply(lambda f: f.ca_pem or ""))
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            delete_unreachable=False,
            # a changed Secret (a rotated password, key or CA) is updated in place, never replaced: a
            # protected Secret cannot be replaced, and a replaced one is missing for a moment
            enable_secret_mutable=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=ready),
        )
        self.register_outputs(
            {
                "name": self.name,
                "apiServerUrl": self.api_server_url,
                "caPem": self.ca_pem,
                "kubeconfig": self.kubeconfig,
            }
        )

    def _eks(self, name: str, args: ClusterArgs) -> tuple[pulumi.Output[str], list[pulumi.Resource]]:
        """The EKS control plane and its managed node group: (kubeconfig, what the provider waits for)."""
        key = self._secrets_key(name, args)
        control_plane = self._control_plane(name, args, key)
        role, attachments = self._node_role(name, args)
        template = self._launch_template(name, args)
        nodes = self._node_group(name, args, role, template, depends_on=[control_plane, *attachments])
        self.oidc_provider_arn = control_plane.oidc_provider_arn
        return control_plane.kubeconfig_json, [nodes]

    def _secrets_key(self, name: str, args: ClusterArgs) -> aws.kms.Key:
        """The KMS key (and its alias) that envelope-encrypts the cluster's Secrets."""
        cfg = args.config
        key = aws.kms.Key(
            f"{name}-secrets",
            description=f"Envelope encryption of Kubernetes Secrets in EKS cluster {cfg.name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags={**args.tags},
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        aws.kms.Alias(
            f"{name}-secrets",
            name=f"alias/{cfg.name}-secrets",
            target_key_id=key.key_id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return key

    def _control_plane(self, name: str, args: ClusterArgs, key: aws.kms.Key) -> eks.Cluster:
        cfg = args.config
        return eks.Cluster(
            f"{name}-eks",
            name=cfg.name,
            version=cfg.kubernetes_version,
            vpc_id=args.vpc_id,
            private_subnet_ids=list(args.private_subnet_ids),
            public_subnet_ids=list(args.public_subnet_ids),
            authentication_mode=eks.AuthenticationMode.API,
            access_entries=admin_access_entries(cfg.admin_principal_arns),
            create_oidc_provider=True,
            endpoint_private_access=True,
            endpoint_public_access=cfg.endpoint_public_access,
            public_access_cidrs=list(cfg.public_access_cidrs) if cfg.endpoint_public_access else None,
            enabled_cluster_log_types=list(cfg.log_types),
            encryption_config_key_arn=key.arn,
            skip_default_node_group=True,
            node_associate_public_ip_address=False,
            deletion_protection=cfg.deletion_protection,
            tags={**args.tags},
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )

    def _node_role(self, name: str, args: ClusterArgs) -> tuple[aws.iam.Role, list[aws.iam.RolePolicyAttachment]]:
        """The nodes' IAM role with the worker, CNI and ECR read policies attached."""
        role = aws.iam.Role(
            f"{name}-nodes",
            assume_role_policy=json.dumps(NODE_ASSUME_ROLE_POLICY),
            tags={**args.tags},
            opts=pulumi.ResourceOptions(parent=self),
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-nodes-{k}", role=role.name, policy_arn=arn, opts=pulumi.ResourceOptions(parent=self)
            )
            for k, arn in NODE_POLICIES.items()
        ]
        return role, attachments

    def _launch_template(self, name: str, args: ClusterArgs) -> aws.ec2.LaunchTemplate:
        cfg, tags = args.config, {**args.tags}
        return aws.ec2.LaunchTemplate(
            f"{name}-nodes",
            description=f"Nodes of EKS cluster {cfg.name}: IMDSv2 only, encrypted gp3 root volume",
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=2
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name="/dev/xvda",
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=cfg.disk_size_gib, volume_type="gp3", encrypted="true", delete_on_termination="true"
                    ),
                )
            ],
            tag_specifications=[aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type="instance", tags=tags)],
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _node_group(
        self,
        name: str,
        args: ClusterArgs,
        role: aws.iam.Role,
        template: aws.ec2.LaunchTemplate,
        depends_on: list[pulumi.Resource],
    ) -> aws.eks.NodeGroup:
        cfg = args.config
        return aws.eks.NodeGroup(
            f"{name}-nodes",
            cluster_name=cfg.name,
            node_group_name_prefix=f"{cfg.name}-nodes-",
            node_role_arn=role.arn,
            subnet_ids=list(args.private_subnet_ids),
            instance_types=[cfg.instance_type],
            ami_type="AL2023_x86_64_STANDARD",
            capacity_type="ON_DEMAND",
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=cfg.nodes.min, desired_size=cfg.nodes.desired, max_size=cfg.nodes.max
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            tags={**args.tags},
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=depends_on,
                # the autoscaler may change the desired size; Pulumi must not fight it
                ignore_changes=["scalingConfig.desiredSize"],
                custom_timeouts=pulumi.CustomTimeouts(create="30m", update="60m", delete="30m"),
            ),
        )


def admin_access_entries(principal_arns: Sequence[str]) -> dict[str, eks.AccessEntryArgs]:
    """One cluster-admin access entry per principal, named `admin-<i>`."""
    return {
        f"admin-{i}": eks.AccessEntryArgs(
            principal_arn=arn,
            access_policies={
                "cluster-admin": eks.AccessPolicyAssociationArgs(
                    policy_arn=ADMIN_POLICY_ARN,
                    access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                )
            },
        )
        for i, arn in enumerate(principal_arns)
    }
