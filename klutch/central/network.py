"""Layer 1: the AWS network. A VPC over N (default 3) availability zones, one public and one
private subnet per zone, an internet gateway, NAT gateway(s) per strategy, routes.

Plain pulumi_aws resources (no awsx component), so the mock engine sees every subnet and route.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from klutch.config.central import NetworkConfig, subnet_layout


@dataclass(frozen=True)
class NetworkArgs:
    config: NetworkConfig
    cluster_name: str
    tags: Mapping[str, str]


class Network(pulumi.ComponentResource):
    """VPC, subnets, gateways and routes for the EKS cluster and its load balancers."""

    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("klutch:network:Network", name, None, opts)
        self._name, self._args = name, args
        self._zones = self._pick_zones(args.config)
        cfg = args.config
        private_cidrs, public_cidrs = subnet_layout(cfg.cidr, cfg.az_count)

        self._vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cfg.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=self._tags("vpc"),
            opts=self._child(),
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self._vpc.id, tags=self._tags("igw"), opts=self._child())
        public_rt = self._route_table("public", "public-default", gateway_id=igw.id)
        public = [
            self._subnet("public", i, cidr, "kubernetes.io/role/elb", public_rt) for i, cidr in enumerate(public_cidrs)
        ]
        nats = self._nat_gateways(public, igw)
        private = [
            self._subnet("private", i, cidr, "kubernetes.io/role/internal-elb", self._private_route_table(i, nats))
            for i, cidr in enumerate(private_cidrs)
        ]

        self.vpc_id = self._vpc.id
        self.public_subnet_ids = [s.id for s in public]
        self.private_subnet_ids = [s.id for s in private]
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
            }
        )

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    def _tags(self, role: str, **extra: str) -> dict[str, str]:
        return {**self._args.tags, "Name": f"{self._args.cluster_name}-{role}", **extra}

    def _route_table(self, role: str, route: str, **target: pulumi.Input[str]) -> aws.ec2.RouteTable:
        """A route table whose default route (`0.0.0.0/0`) goes to `target` (a gateway or a NAT gateway)."""
        table = aws.ec2.RouteTable(
            f"{self._name}-{role}", vpc_id=self._vpc.id, tags=self._tags(role), opts=self._child()
        )
        aws.ec2.Route(
            f"{self._name}-{route}",
            route_table_id=table.id,
            destination_cidr_block="0.0.0.0/0",
            **target,
            opts=self._child(),
        )
        return table

    def _private_route_table(self, i: int, nats: list[aws.ec2.NatGateway]) -> aws.ec2.RouteTable:
        """Zone `i`'s private route table: out through its NAT gateway (or the single one)."""
        return self._route_table(f"private-{i}", f"private-{i}-default", nat_gateway_id=nats[i % len(nats)].id)

    def _subnet(self, tier: str, i: int, cidr: str, role_tag: str, route_table: aws.ec2.RouteTable) -> aws.ec2.Subnet:
        cluster_tag = {f"kubernetes.io/cluster/{self._args.cluster_name}": "shared"}
        created = aws.ec2.Subnet(
            f"{self._name}-{tier}-{i}",
            vpc_id=self._vpc.id,
            cidr_block=cidr,
            availability_zone=self._zones[i],
            map_public_ip_on_launch=False,
            tags=self._tags(f"{tier}-{i}", **cluster_tag, **{role_tag: "1"}),
            opts=self._child(),
        )
        aws.ec2.RouteTableAssociation(
            f"{self._name}-{tier}-{i}", subnet_id=created.id, route_table_id=route_table.id, opts=self._child()
        )
        return created

    def _nat_gateways(self, public: list[aws.ec2.Subnet], igw: aws.ec2.InternetGateway) -> list[aws.ec2.NatGateway]:
        """One NAT gateway per zone (`one-per-az`) or a single one, each with its Elastic IP."""
        cfg = self._args.config
        nats = []
        for i in range(cfg.az_count if cfg.nat_gateways == "one-per-az" else 1):
            eip = aws.ec2.Eip(f"{self._name}-nat-{i}", domain="vpc", tags=self._tags(f"nat-{i}"), opts=self._child())
            nats.append(
                aws.ec2.NatGateway(
                    f"{self._name}-nat-{i}",
                    allocation_id=eip.id,
                    subnet_id=public[i].id,
                    tags=self._tags(f"nat-{i}"),
                    opts=self._child(depends_on=[igw]),
                )
            )
        return nats

    @staticmethod
    def _pick_zones(cfg: NetworkConfig) -> list[pulumi.Input[str]]:
        """The configured zones, or the region's first `az_count` available (not opt-in) zones."""
        if cfg.availability_zones:
            return list(cfg.availability_zones)
        found = aws.get_availability_zones_output(
            state="available", filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}]
        ).names

        def pick(i: int) -> pulumi.Output[str]:
            def at(names: list[str]) -> str:
                if len(names) < cfg.az_count:
                    raise pulumi.RunError(
                        f"network.azCount = {cfg.az_count}: the region has only {len(names)} available zones "
                        f"({', '.join(names)}); lower azCount or pick another region"
                    )
                return sorted(names)[i]

            return found.apply(at)

        return [pick(i) for i in range(cfg.az_count)]
