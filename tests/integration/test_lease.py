"""The replica lease against a real redis-server: one holder, owner-only renew/release, expiry, heartbeat."""

from __future__ import annotations

import time

from rq.job import Job

from producer.replicas import Replicas
from tests.conftest import wait_until
from workers.commit_tracker import CommitTracker
from workers.contract import DeployKeys, JobKind, JobSpec
from workers.deploy_state import DeployState
from workers.lease import Holder, Lease, job_lease_key, release_left_by


def test_one_claim_wins_and_only_its_owner_renews_or_releases(redis_server) -> None:
    client = redis_server.client()
    key = job_lease_key(DeployKeys("dep", "web-1"), JobKind.PRE, "c" * 40)
    first = Lease.new(client, key, "web-1", "c" * 40)
    second = Lease.new(client, key, "web-2", "c" * 40)
    assert first.acquire()
    assert not second.acquire()
    assert second.holder() == Holder("web-1", first.holder_of_this_claim.token, "c" * 40)
    assert not second.renew() and not second.release(), "another claim must never renew or free the lease"
    assert first.renew()
    assert 0 < client.pttl(key) <= 10_000
    assert first.release()
    assert second.acquire()
    assert not first.release(), "a stale owner must not delete its successor's lease"
    assert second.holder() is not None and second.holder().instance == "web-2"  # type: ignore[union-attr]


def test_pre_deploy_lease_is_per_deployment_and_post_per_commit() -> None:
    keys = DeployKeys("dep", "web-1")
    assert job_lease_key(keys, JobKind.PRE, "a" * 40) == job_lease_key(keys, JobKind.PRE, "b" * 40)
    assert job_lease_key(keys, JobKind.POST, "a" * 40) != job_lease_key(keys, JobKind.POST, "b" * 40)
    assert job_lease_key(keys, JobKind.PRE, "a") == job_lease_key(
        DeployKeys("dep", "web-2"), JobKind.PRE, "a"
    )


def test_an_unrenewed_lease_expires_and_a_heartbeat_keeps_one_alive(redis_server) -> None:
    client = redis_server.client()
    # A TTL of ten beats: a loaded machine may delay a beat or two, never ten.
    dead = Lease.new(client, "t:dead", "web-1", "c", ttl=1.0)
    alive = Lease.new(client, "t:alive", "web-1", "c", ttl=1.0)
    assert dead.acquire() and alive.acquire()
    with alive.heartbeat(interval=0.1):
        wait_until(lambda: dead.holder() is None, 5, what="the unrenewed lease to expire")
        time.sleep(1.2)
        assert alive.holder() is not None, "the heartbeat did not keep the lease"
    wait_until(lambda: alive.holder() is None, 3, what="the lease to expire once its heartbeat stopped")


def test_a_heartbeat_reports_a_lost_lease_and_stops(redis_server) -> None:
    client = redis_server.client()
    lease = Lease.new(client, "t:lost", "web-1", "c", ttl=5)
    assert lease.acquire()
    lost: list[Holder | None] = []
    beat = lease.heartbeat(interval=0.05, on_lost=lost.append).start()
    client.set("t:lost", "web-9 other c")
    wait_until(lambda: lost, 3, what="the heartbeat to notice")
    beat.stop()
    assert beat.lost and lost[0] is not None and lost[0].instance == "web-9"
    assert client.get("t:lost") == "web-9 other c"


def test_a_lease_left_by_an_earlier_run_of_the_same_instance_is_freed_at_boot(redis_server) -> None:
    client = redis_server.client()
    left = Lease.new(client, "t:boot", "web-1", "c")
    assert left.acquire()
    assert not release_left_by(client, "t:boot", "web-"), "a prefix of another instance's id must not match"
    assert not release_left_by(client, "t:boot", "web-2")
    assert release_left_by(client, "t:boot", "web-1")
    assert left.holder() is None


def test_the_poller_keeps_its_claim_until_the_job_starts_and_rechecks_after_claiming(redis_server) -> None:
    client = redis_server.client()
    sha = "c" * 40

    def replicas(instance: str) -> Replicas:
        keys = DeployKeys("dep", instance)
        return Replicas(client, keys, CommitTracker(client, keys), heartbeat=0.05)

    first, second = replicas("web-1"), replicas("web-2")
    lease = first.claim(sha, {})
    assert lease is not None and second.claim(sha, {}) is None
    assert second.holder() == lease.holder_of_this_claim
    client.pexpire(first.lease_key, 300)  # without the poller's heartbeat it would expire soon
    time.sleep(0.5)
    assert second.holder() is not None, "the claim expired while the poller was checking out"
    client.hset(Job.key_for("job-1"), "status", "queued")
    first.hand_over(Job("job-1", connection=client))
    time.sleep(0.5)
    assert second.holder() is not None, "the claim expired while its job waited in the queue"
    client.hset(Job.key_for("job-1"), "status", "started")  # from now on the work horse renews it
    time.sleep(0.2)
    client.pexpire(first.lease_key, 200)
    wait_until(lambda: second.holder() is None, 3, what="the poller to stop renewing a started job's lease")

    # Check, lock, check again: a run that ended between the look and the claim wins.
    before = CommitTracker(client, DeployKeys("dep", "web-1")).commit_record(sha)
    web3 = DeployKeys("dep", "web-3")
    DeployState(client, web3).pre_succeeded(
        "r1",
        JobSpec(JobKind.PRE, "true", "/tmp", 10, sha, None, "main", "/tmp", web3.deployment, web3.instance),
    )
    assert second.claim(sha, before) is None and second.holder() is None
    assert second.current(sha, second.record(sha)), "the other replica's success is there to follow"
    # A claim whose job was never queued is released.
    assert second.claim("d" * 40, {}) is not None
    second.drop()
    assert first.holder() is None
