"""Load generator: many client sessions at a target order rate, behaving like real broker apps.

Each session knows every endpoint (sites x carriers) and sticks to one until it fails, then
moves to the next with exponential backoff. A retry always reuses the client order id, so
retries are safe; 429 is honoured (Retry-After). Every order and every asset view goes into
the ledger, which `reconcile` later compares with the system of record.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import aiohttp

from .ledger import SERVED_AT_ONCE_MS, AssetView, Ledger, SentOrder
from .schema import account_name
from .origin import ORIGIN_HEADER

KEEPALIVE_S = 3600.0  # an app keeps its connection; the server or a proxy may still close it (it is reopened)
# An app notices a dead server in seconds yet waits for a slow answer (an order parked through a failover, up to
# the request timeout): TCP keepalive probes its connection once it is idle for a second (the request sent and
# acknowledged) and data unacknowledged for DEAD_PEER_S fails it. A server that is there answers the probes
# however long its answer takes; a site that went dark does not, and its apps move to the next endpoint after
# DEAD_PEER_S instead of the whole request timeout.
DEAD_PEER_S = 3
LOGIN_S = 1.0  # every session logs in (loads its balance screen) within this of the start, then refreshes on its timer
SYMBOLS = ("AAPL", "MSFT", "TSLA", "NVDA", "0700.HK", "9988.HK")


def app_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """A client session's socket: a dead peer noticed within DEAD_PEER_S, a slow one waited for."""
    family, type_, proto = addr_info[:3]
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, DEAD_PEER_S - 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, DEAD_PEER_S * 1000)
    return sock


def _origin_headers(origin: str) -> dict[str, str]:
    return {ORIGIN_HEADER: "toolkit"} if origin == "toolkit" else {}


@dataclass(frozen=True)
class LoadPlan:
    endpoints: tuple[str, ...]
    rate: float = 100.0              # orders per second, all sessions together
    duration_s: float = 10.0
    sessions: int = 20
    warmup_s: float = 0.0            # the same load first, recorded in the ledger but not in the figures: the
                                     # sessions' connections are opened then and held into the measured window
    accounts: int = 1000             # acct-00000 .. ; must exist
    overnight_share: float = 0.0     # share of orders in the overnight session
    limit_share: float = 0.0         # share of limit orders (they rest at the venue)
    assets_every_s: float = 1.0      # each session views its assets this often, whatever its orders do
    # a trading app waits this long for an order's answer: longer than a gateway parks an order for a database
    # leader (park_s, 8 s), so a failover costs it latency, not a retry; connecting waits connect_timeout_s
    request_timeout_s: float = 10.0
    connect_timeout_s: float = 1.0
    give_up_s: float = 20.0          # a client stops retrying one order after this
    max_backoff_s: float = 2.0
    seed: int | None = None
    # the toolkit's own load says so (sessions.py), so the stack's observed peak leaves it out; `client` sends
    # nothing, as a trading app does (a test standing in for real clients)
    origin: Literal["toolkit", "client"] = "toolkit"


@dataclass
class LoadStats:
    sessions: int = 0  # client sessions held, each with its own connection
    connected: int = 0  # sessions whose latest exchange got an answer from a server (set at each progress report)
    planned: int = 0
    sent: int = 0
    acked: int = 0
    rejected: int = 0
    refused: int = 0
    unknown: int = 0
    retries: int = 0
    failovers: int = 0
    throttled: int = 0  # 429 answers seen (each retried)
    server_errors: int = 0  # 5xx answers seen
    assets_ok: int = 0
    assets_stale: int = 0
    assets_unavailable: int = 0
    assets_bad: int = 0
    served_at_once: int = 0  # acked on the first attempt within SERVED_AT_ONCE_MS
    acked_first: int = 0  # acked on the first attempt, however long it took (a parked order is one)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    warmup: dict[str, Any] | None = None  # the warm-up's own figures (its connections opened then), if it had one

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None

        data = {k: v for k, v in asdict(self).items() if k != "latencies_ms"}
        return {**data, "latency_ms": {"p50": pct(0.50), "p99": pct(0.99), "max": round(lat[-1], 2) if lat else None}}

    @property
    def answered(self) -> int:
        """Orders that have ended, whatever their outcome."""
        return self.acked + self.rejected + self.refused + self.unknown

    def progress(self) -> dict[str, Any]:
        """One progress report (cumulative counts, stamped now): what a drill watches while the clients run."""
        return {"t": round(time.time(), 3), "sent": self.sent, "answered": self.answered,
                "served_at_once": self.served_at_once, "connected": self.connected, "sessions": self.sessions}


class LoadGenerator:
    def __init__(self, plan: LoadPlan, ledger: Ledger, on_progress: Callable[[LoadStats], None] = lambda s: None,
                 stop: asyncio.Event | None = None):
        if not plan.endpoints:
            raise ValueError("a load plan needs at least one endpoint")
        self.plan, self.ledger, self.on_progress = plan, ledger, on_progress
        self.stop = stop or asyncio.Event()  # set: end now, as if the duration were up (a drill ends its load so)
        self._end = float("inf")
        self._stopped: asyncio.Future[None] | None = None  # done once `stop` is set: wakes every idle session
        self.run_id = uuid.uuid4().hex[:8]
        self.stats = LoadStats(sessions=plan.sessions, planned=int(plan.rate * plan.duration_s))
        self.warmup = LoadStats(sessions=plan.sessions, planned=int(plan.rate * plan.warmup_s))
        self._measure_from = 0.0
        self.rng = random.Random(plan.seed)
        self._orders: list[SentOrder] = []
        self._preferred = [k % len(plan.endpoints) for k in range(plan.sessions)]  # spread like apps over sites
        self._connected: set[int] = set()  # sessions whose latest exchange was answered by a server
        self._assets: list[AssetView] = []

    async def run(self) -> LoadStats:
        plan = self.plan
        self.ledger.add_run(self.run_id, time.time(), json.dumps(asdict(plan)))
        # aiohttp rather than httpx here: the load generator must out-run the system it loads, and
        # aiohttp's client costs a fraction of the CPU per request. Each session is one app: it holds its own
        # connection (opened at its first request, kept alive) for its orders and its balance screen.
        timeout = aiohttp.ClientTimeout(total=plan.request_timeout_s, sock_connect=plan.connect_timeout_s)
        clients = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1, keepalive_timeout=KEEPALIVE_S,
                                                                        socket_factory=app_socket),
                                         timeout=timeout, headers=_origin_headers(plan.origin))
                   for _ in range(plan.sessions)]
        self._stopped = asyncio.get_running_loop().create_future()
        try:
            start = time.monotonic()
            self._measure_from = start + plan.warmup_s
            self._end = self._measure_from + plan.duration_s
            flusher = asyncio.create_task(self._flush_loop())
            stopper = asyncio.create_task(self._stop_early(start))
            sessions = [asyncio.create_task(self._session(clients[k], k, start)) for k in range(plan.sessions)]
            if plan.assets_every_s > 0:
                sessions += [asyncio.create_task(self._viewer(clients[k], k, start)) for k in range(plan.sessions)]
            try:
                await asyncio.gather(*sessions)
            finally:
                for task in sessions:
                    task.cancel()
                flusher.cancel()
                stopper.cancel()
                self._flush()
                self.stats.connected = len(self._connected)
        finally:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        if plan.warmup_s > 0:
            self.stats.warmup = self.warmup.summary()
        return self.stats

    async def _stop_early(self, start: float) -> None:
        await self.stop.wait()
        now = time.monotonic()
        if now < self._end:  # what was planned is what the shorter run should have sent
            self._end = now
            self.stats.planned = int(self.plan.rate * max(0.0, now - self._measure_from))
            self.warmup.planned = int(self.plan.rate * (min(now, self._measure_from) - start))
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    async def _idle(self, delay: float) -> None:
        """Wait `delay` seconds between a session's turns, or less if the run is stopped: a session waiting for
        its next order (up to sessions / rate seconds) or refresh must not hold the end of a stopped run."""
        if delay > 0 and self._stopped is not None and not self._stopped.done():
            await asyncio.wait((self._stopped,), timeout=delay)

    def _flush(self) -> None:
        orders, assets, self._orders, self._assets = self._orders, self._assets, [], []
        self.ledger.write(orders, assets)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self._flush()
            self.stats.connected = len(self._connected)
            self.on_progress(self.stats)

    async def _session(self, client: aiohttp.ClientSession, k: int, start: float) -> None:
        plan = self.plan
        client_id = f"{self.run_id}-c{k:05d}"
        j = 0
        while True:
            due = start + (k + j * plan.sessions) / plan.rate
            # the run lasts its duration: a session that fell behind (an overloaded system answers slowly)
            # stops at the end instead of sending its backlog late; `sent` < `planned` shows the shortfall
            if due >= self._end or time.monotonic() >= self._end:
                return
            await self._idle(due - time.monotonic())
            if due >= self._end:  # stopped while it waited: its turn is not part of the run
                return
            account = account_name(self.rng.randrange(plan.accounts))
            self._preferred[k] = await self._order(client, k, f"{client_id}-{j}", account, self._preferred[k])
            j += 1

    async def _viewer(self, client: aiohttp.ClientSession, k: int, start: float) -> None:
        """The app's balance screen: loaded when the app logs in (every session within LOGIN_S of the start, so
        each holds its connection from then on), then refreshed on its own timer (it does not wait for orders)."""
        plan = self.plan
        client_id = f"{self.run_id}-c{k:05d}"
        account = account_name(k % plan.accounts)
        login = start + (k / plan.sessions) * min(LOGIN_S, plan.assets_every_s)
        await self._idle(login - time.monotonic())
        if login < self._end and time.monotonic() < self._end:
            await self._assets_view(client, k, client_id, account)
        t = start + (k / plan.sessions) * plan.assets_every_s
        if t <= login:
            t += plan.assets_every_s
        while t < self._end:
            await self._idle(t - time.monotonic())
            if t >= self._end or time.monotonic() >= self._end:
                return
            await self._assets_view(client, k, client_id, account)
            t += plan.assets_every_s

    def _body(self, account: str, client_order_id: str) -> dict[str, Any]:
        plan, rng = self.plan, self.rng
        body: dict[str, Any] = {"account": account, "client_order_id": client_order_id,
                                "symbol": rng.choice(SYMBOLS), "side": rng.choice(("buy", "sell")),
                                "qty": rng.randint(1, 10),
                                "session": "overnight" if rng.random() < plan.overnight_share else "regular"}
        if rng.random() < plan.limit_share:
            body |= {"type": "limit", "limit_price": "50.00"}
        return body

    def _stats_at(self, t: float) -> LoadStats:
        """Where what starts at monotonic time `t` counts: the warm-up's figures or the measured ones."""
        return self.stats if t >= self._measure_from else self.warmup

    async def _order(self, client: aiohttp.ClientSession, k: int, client_order_id: str, account: str,
                     preferred: int) -> int:
        plan = self.plan
        client_id = f"{self.run_id}-c{k:05d}"
        body = self._body(account, client_order_id)
        endpoints, index = plan.endpoints, preferred
        first = time.time()
        t0 = time.monotonic()
        stats = self._stats_at(t0)
        attempts, tried, backoff = 0, {index}, 0.05
        outcome, status, order, detail = "unknown", None, None, None
        maybe_placed = False  # an attempt reached a server and its answer was lost (or was a 5xx)
        stats.sent += 1
        while time.monotonic() - t0 < plan.give_up_s:
            attempts += 1
            endpoint = endpoints[index]
            try:
                async with client.post(f"{endpoint}/v1/orders", json=body) as response:
                    status, text = response.status, await response.text()
                    retry_after = response.headers.get("Retry-After", "1")
            except aiohttp.ClientConnectorError as exc:  # not sent: safe to go elsewhere
                outcome, status, detail = "unknown", None, f"connect: {exc}"
                self._connected.discard(k)
            except (aiohttp.ClientError, TimeoutError) as exc:  # sent, answer lost: retrying the same id is safe
                outcome, status, detail = "unknown", None, f"{type(exc).__name__}: {exc}"
                maybe_placed = True
                self._connected.discard(k)
            else:
                self._connected.add(k)
                if status in (200, 201):
                    outcome, order, detail = "acked", json.loads(text), None
                    break
                if status == 429:
                    stats.throttled += 1
                    outcome, detail = "refused", text[:200]
                    await asyncio.sleep(min(float(retry_after), plan.max_backoff_s) * (0.5 + self.rng.random()))
                    stats.retries += 1
                    continue
                if 400 <= status < 500:
                    outcome, detail = "rejected", text[:300]
                    break
                stats.server_errors += 1
                outcome, detail = "unknown", f"{status}: {text[:200]}"
                maybe_placed = True
            # failed here: next endpoint, with backoff
            stats.retries += 1
            if len(endpoints) > 1:
                index = (index + 1) % len(endpoints)
                tried.add(index)
                stats.failovers += 1
            await asyncio.sleep(backoff * (0.5 + self.rng.random()))
            backoff = min(backoff * 2, plan.max_backoff_s)
        if outcome == "refused" and maybe_placed:
            # a 429 to a retry says "not now", not "never placed": an earlier attempt may have been, so the
            # client does not know (reconciliation finds out), rather than believing it was refused
            outcome, detail = "unknown", f"gave up on 429s after an attempt whose answer was lost: {detail}"
        latency = (time.monotonic() - t0) * 1000
        setattr(stats, outcome, getattr(stats, outcome) + 1)
        if outcome == "acked":
            stats.latencies_ms.append(latency)
            stats.served_at_once += attempts == 1 and latency <= SERVED_AT_ONCE_MS
            stats.acked_first += attempts == 1
        self._orders.append(SentOrder(client_id, account, client_order_id, body["session"], endpoints[index], first,
                                      attempts, len(tried), outcome, status, order["id"] if order else None,
                                      order["state"] if order else None, round(latency, 3), detail))
        return index

    async def _assets_view(self, client: aiohttp.ClientSession, k: int, client_id: str, account: str) -> None:
        """One refresh of the balance screen. Like the app, a refresh that cannot reach its endpoint tries the
        next one (and the session stays there); an answer, whatever it says, is what the client saw."""
        endpoints, index = self.plan.endpoints, self._preferred[k]
        stats = self._stats_at(time.monotonic())
        for attempt in range(len(endpoints)):
            endpoint = endpoints[index]
            try:
                async with client.get(f"{endpoint}/v1/accounts/{account}/assets") as response:
                    status, text = response.status, await response.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._connected.discard(k)
                view = AssetView(client_id, account, time.time(), endpoint, None, None, None, False, "unavailable",
                                 f"{type(exc).__name__}")
                if attempt + 1 < len(endpoints):
                    index = self._preferred[k] = (index + 1) % len(endpoints)
                    continue
            else:
                self._connected.add(k)
                view = judge_assets(client_id, account, endpoint, status, _json(text))
            break
        stats.__dict__[f"assets_{view.verdict}"] += 1
        self._assets.append(view)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def judge_assets(client_id: str, account: str, endpoint: str, status: int, body: Any) -> AssetView:
    """What a client saw: a live balance, a stale one marked as such, an honest 'unavailable', or a bad one."""
    def view(verdict: str, cash: str | None = None, positions: int | None = None, stale: bool = False,
             detail: str | None = None) -> AssetView:
        return AssetView(client_id, account, time.time(), endpoint, status, cash, positions, stale, verdict, detail)

    if status == 200:
        if not isinstance(body, dict) or body.get("stale") is not False or body.get("account") != account:
            return view("bad", detail="200 without a live, well-formed balance for this account")
        try:
            cash = Decimal(str(body["cash"]))
        except (KeyError, InvalidOperation):
            return view("bad", detail="200 with no readable cash")
        positions = len(body.get("positions") or [])
        if cash == 0 and positions == 0:
            return view("bad", str(cash), positions, detail="zero balance and no positions")
        return view("ok", str(cash), positions)
    if status == 503:
        last = body.get("last_known") if isinstance(body, dict) else None
        if isinstance(last, dict):
            if last.get("stale") is not True or not last.get("as_of"):
                return view("bad", detail="503 with a last value not marked stale")
            return view("stale", str(last.get("cash")), len(last.get("positions") or []), True)
        return view("unavailable", detail="503")
    if status in (429, 502, 504):  # throttled, or a proxy that could not reach a gateway: honest, no data
        return view("unavailable", detail=str(status))
    return view("bad", detail=f"unexpected status {status}")  # a 500 is the gateway failing instead of a 503


async def run_load(plan: LoadPlan, ledger_path: Path, on_progress: Callable[[LoadStats], None] = lambda s: None,
                   stop: asyncio.Event | None = None) -> tuple[str, LoadStats]:
    """Run a load plan; `stop` ends it early (orders in flight are still answered and recorded)."""
    ledger = Ledger(ledger_path)
    try:
        generator = LoadGenerator(plan, ledger, on_progress, stop)
        stats = await generator.run()
        return generator.run_id, stats
    finally:
        ledger.close()
