"""Network layer: exact subnet layout, gateways, routes and tags."""

from __future__ import annotations

import ipaddress

import pytest

from klutch.offline.curated import MOCK_ZONES
from tests import harness

SUBNET = "aws:ec2/subnet:Subnet"
NAT = "aws:ec2/natGateway:NatGateway"
ROUTE = "aws:ec2/route:Route"


@pytest.fixture(scope="module")
def ev():
    return harness.run()


def subnets(ev, kind):
    return sorted((r for r in ev.by_type(SUBNET) if f"-{kind}-" in r.name), key=lambda r: r.name)


def test_vpc(ev):
    vpc = ev.one("aws:ec2/vpc:Vpc")
    assert vpc.name == "network-vpc"
    assert vpc.get("cidrBlock") == "10.0.0.0/16"
    assert vpc.get("enableDnsHostnames") is True and vpc.get("enableDnsSupport") is True
    assert vpc.get("tags")["Name"] == "klutch-test-vpc"
    assert vpc.get("tags")["klutch.anynines.com/stack"] == "test"


def test_one_public_and_one_private_subnet_per_zone(ev):
    public, private = subnets(ev, "public"), subnets(ev, "private")
    assert [s.get("availabilityZone") for s in public] == MOCK_ZONES
    assert [s.get("availabilityZone") for s in private] == MOCK_ZONES
    assert [s.get("cidrBlock") for s in private] == ["10.0.0.0/18", "10.0.64.0/18", "10.0.128.0/18"]
    assert [s.get("cidrBlock") for s in public] == ["10.0.192.0/20", "10.0.208.0/20", "10.0.224.0/20"]
    nets = [ipaddress.ip_network(s.get("cidrBlock")) for s in public + private]
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    assert all(n.subnet_of(ipaddress.ip_network("10.0.0.0/16")) for n in nets)
    assert all(s.get("mapPublicIpOnLaunch") is False for s in public + private)


def test_subnet_tags_for_load_balancers_and_cluster(ev):
    for s in subnets(ev, "public"):
        assert s.get("tags")["kubernetes.io/role/elb"] == "1"
        assert "kubernetes.io/role/internal-elb" not in s.get("tags")
        assert s.get("tags")["kubernetes.io/cluster/klutch-test"] == "shared"
    for s in subnets(ev, "private"):
        assert s.get("tags")["kubernetes.io/role/internal-elb"] == "1"
        assert "kubernetes.io/role/elb" not in s.get("tags")
        assert s.get("tags")["kubernetes.io/cluster/klutch-test"] == "shared"


def test_single_nat_gateway_by_default(ev):
    nats = ev.by_type(NAT)
    assert [n.name for n in nats] == ["network-nat-0"]
    public0 = ev.one(SUBNET, "network-public-0")
    assert nats[0].get("subnetId") == public0.id
    assert nats[0].get("allocationId") == ev.one("aws:ec2/eip:Eip", "network-nat-0").id
    assert ev.depends_on(nats[0], ev.one("aws:ec2/internetGateway:InternetGateway"))
    private_routes = [r for r in ev.by_type(ROUTE) if r.name.startswith("network-private-")]
    assert len(private_routes) == 3
    assert {r.get("natGatewayId") for r in private_routes} == {nats[0].id}


def test_one_nat_gateway_per_zone():
    ev = harness.run({"network": {"natGateways": "one-per-az"}})
    nats = sorted(ev.by_type(NAT), key=lambda n: n.name)
    assert [n.name for n in nats] == ["network-nat-0", "network-nat-1", "network-nat-2"]
    for i, nat in enumerate(nats):
        assert nat.get("subnetId") == ev.one(SUBNET, f"network-public-{i}").id
        route = ev.one(ROUTE, f"network-private-{i}-default")
        assert route.get("natGatewayId") == nat.id
        assert route.get("destinationCidrBlock") == "0.0.0.0/0"


def test_public_route_goes_to_the_internet_gateway(ev):
    route = ev.one(ROUTE, "network-public-default")
    assert route.get("gatewayId") == ev.one("aws:ec2/internetGateway:InternetGateway").id
    assert route.get("destinationCidrBlock") == "0.0.0.0/0"
    assert route.get("routeTableId") == ev.one("aws:ec2/routeTable:RouteTable", "network-public").id


def test_every_subnet_is_associated_with_its_route_table(ev):
    assoc = {
        a.get("subnetId"): a.get("routeTableId")
        for a in ev.by_type("aws:ec2/routeTableAssociation:RouteTableAssociation")
    }
    public_rt = ev.one("aws:ec2/routeTable:RouteTable", "network-public").id
    for s in subnets(ev, "public"):
        assert assoc[s.id] == public_rt
    for i, s in enumerate(subnets(ev, "private")):
        assert assoc[s.id] == ev.one("aws:ec2/routeTable:RouteTable", f"network-private-{i}").id


def test_explicit_zones_and_a_fourth_zone():
    zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c", "eu-west-1d"]
    ev = harness.run({"network": {"cidr": "172.20.0.0/16", "availabilityZones": zones}}, region="eu-west-1")
    assert [s.get("availabilityZone") for s in subnets(ev, "private")] == zones
    assert len(subnets(ev, "public")) == 4


def test_network_outputs(ev):
    assert ev.output("vpcId") == "network-vpc-id"
    assert ev.output("publicSubnetIds") == [f"network-public-{i}-id" for i in range(3)]
    assert ev.output("privateSubnetIds") == [f"network-private-{i}-id" for i in range(3)]


def test_aws_resources_are_children_of_the_network_component(ev):
    network = ev.one("klutch:network:Network")
    for r in ev.by_prefix("aws:ec2/"):
        if r.type != "aws:ec2/launchTemplate:LaunchTemplate":
            assert r.parent == network.urn, r.name
