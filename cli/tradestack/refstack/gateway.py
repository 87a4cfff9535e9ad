"""Order gateway: places, queries and cancels orders; answers asset queries. FastAPI on uvicorn.

Guarantees: a 2xx for a new order is sent only after the order is committed; a retry with
the same (account, client_order_id) returns that order, never a second one; when the
database is unreachable the answer is 503 with Retry-After (assets: plus the last value
seen, marked stale with its time), never a zero or empty balance; beyond this instance's
admission limits the answer is an immediate 429 with Retry-After. A new order that arrives
while the database has no writable leader (a failover) is parked until one accepts it, for
at most `park_s` (intake.py), and answered once committed: a failover costs its client
latency, not an error. Meanwhile the gateway stays ready, so its load balancer keeps sending
orders to it rather than refusing them itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import uuid
from http import HTTPStatus
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any, Literal

import psycopg
from fastapi import Body, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics,
                               generate_latest)
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag
from starlette.exceptions import HTTPException as StarletteHTTPException

from .admission import AdmissionControl
from .config import GatewayConfig
from .origin import ORIGINS, origin_of
from .intake import NewOrder, OrderIntake
from .schema import RECONNECT_TIMEOUT_S, SESSION_OPTIONS, STATES, UNAVAILABLE, fast_reconnects

ACCOUNT_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
CLIENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
AccountPath = Annotated[str, Path(pattern=ACCOUNT_PATTERN, description="account id, e.g. acct-00001")]


# -- API models -------------------------------------------------------------------------------
# A price is a decimal string (never a binary float): more than 0, at most 1,000,000, at most four decimals.
# The pattern says exactly that, so the published schema accepts exactly what the server does.
PRICE_PATTERN = (r"^(?:0\.(?:[1-9][0-9]{0,3}|0[1-9][0-9]{0,2}|00[1-9][0-9]?|000[1-9])"
                 r"|[1-9][0-9]{0,5}(?:\.[0-9]{1,4})?|1000000(?:\.0{1,4})?)$")


class _OrderFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account: str = Field(pattern=ACCOUNT_PATTERN, examples=["acct-00001"])
    client_order_id: str = Field(pattern=CLIENT_ID_PATTERN, description="the client's idempotency key")
    symbol: str = Field(pattern=r"^[A-Z0-9][A-Z0-9.]{0,11}$", examples=["AAPL", "0700.HK"])
    side: Literal["buy", "sell"]
    qty: int = Field(ge=1, le=1_000_000)
    session: Literal["regular", "overnight"] = "regular"


class MarketOrderRequest(_OrderFields):
    """A market order: fills at the venue's price; it takes no limit price."""
    type: Literal["market"] = "market"
    limit_price: None = Field(None, description="market orders take no limit price")

    @property
    def price(self) -> Decimal | None:
        return None


class LimitOrderRequest(_OrderFields):
    """A limit order: rests at the venue at `limit_price` or better."""
    type: Literal["limit"]
    limit_price: str = Field(pattern=PRICE_PATTERN, examples=["50.25"], description="decimal string, e.g. \"50.25\"")

    @property
    def price(self) -> Decimal | None:
        return Decimal(self.limit_price)


def _order_type(value: Any) -> str:
    """Which schema a body is judged by: its `type`, market when absent (so problems name the fields of the
    order the client meant, e.g. `body.qty`, not those of every kind of order)."""
    kind = value.get("type", "market") if isinstance(value, dict) else getattr(value, "type", "market")
    return kind if isinstance(kind, str) else repr(kind)


OrderRequest = Annotated[Annotated[MarketOrderRequest, Tag("market")] | Annotated[LimitOrderRequest, Tag("limit")],
                         Discriminator(_order_type, custom_error_type="order_type",
                                       custom_error_message="type must be 'market' (the default) or 'limit'")]
ORDER_KINDS = ("market", "limit")

# A created (or found) order leads to its reads, its cancel and its account (OpenAPI links).
ORDER_LINKS = {
    "GetOrder": {"operationId": "getOrder", "parameters": {"order_id": "$response.body#/id"}},
    "CancelOrder": {"operationId": "cancelOrder", "parameters": {"order_id": "$response.body#/id"}},
    "GetOrderByClientId": {"operationId": "getOrderByClientId",
                           "parameters": {"account": "$response.body#/account",
                                          "client_order_id": "$response.body#/client_order_id"}},
    "GetAssets": {"operationId": "getAssets", "parameters": {"account": "$response.body#/account"}},
}


class Order(BaseModel):
    id: uuid.UUID
    account: str
    client_order_id: str
    symbol: str
    side: str
    qty: int
    type: str
    limit_price: Decimal | None
    session: str
    state: Literal[STATES]  # type: ignore[valid-type]
    reason: str | None = Field(None, description="why the order is rejected, cancelled or unresolved")
    venue: str | None
    cancel_requested: bool
    fill_price: Decimal | None
    created_at: dt.datetime
    updated_at: dt.datetime


class Position(BaseModel):
    symbol: str
    qty: int


class Assets(BaseModel):
    account: str
    cash: Decimal
    positions: list[Position]
    as_of: dt.datetime = Field(description="when this value was read from the system of record")
    stale: bool = Field(description="true only for a last known value served while the database is unreachable")


class FieldProblem(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    error: str
    detail: str | None = None
    retry_after_s: int | None = None
    problems: list[FieldProblem] | None = None
    last_known: Assets | None = Field(None, description="assets only: last value read, marked stale")


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "required": True,
                               "schema": {"type": "integer", "minimum": 1}}}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "the body is not valid JSON", 404: "unknown account or order", 409: "conflicts with an existing order", 422: "invalid request",
            429: "admission limit reached; retry after Retry-After seconds",
            503: "database unavailable; retry after Retry-After seconds"}
    return {code: {"model": ErrorBody, "description": text[code], **({"headers": RETRY_AFTER} if code in (429, 503)
                                                                     else {})} for code in codes}


READY_DB_S = 0.3  # /readyz waits this long for the database


class DatabaseUnavailable(Exception):
    pass


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str | None = None):
        self.status, self.error, self.detail = status, error, detail


ORDER_COLUMNS = ("id, account, client_order_id, symbol, side, qty, order_type AS type, limit_price, session, state, "
                 "reason, venue, cancel_requested, fill_price, created_at, updated_at")
_ROUTES = [(re.compile(p), name) for p, name in (
    (r"^/v1/orders$", "/v1/orders"), (r"^/v1/orders/[^/]+$", "/v1/orders/{id}"),
    (r"^/v1/orders/[^/]+/cancel$", "/v1/orders/{id}/cancel"),
    (r"^/v1/accounts/[^/]+/assets$", "/v1/accounts/{account}/assets"),
    (r"^/v1/accounts/[^/]+/orders/[^/]+$", "/v1/accounts/{account}/orders/{client_order_id}"))]


def _field_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """`body.limit.qty` (the order kind pydantic validated against) reads as the client wrote it: `body.qty`."""
    return (loc[0], *loc[2:]) if len(loc) > 2 and loc[0] == "body" and loc[1] in ORDER_KINDS else loc


def _route(path: str) -> str:
    return next((name for rx, name in _ROUTES if rx.match(path)), "other")


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # the *_created series only add noise to every scrape
        self.registry = CollectorRegistry()
        self.requests = Counter("tradestack_gateway_requests_total", "HTTP requests by route and status",
                                ["method", "route", "code"], registry=self.registry)
        self.latency = Histogram("tradestack_gateway_request_seconds", "request latency in the gateway",
                                 ["route", "code"],
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5),
                                 registry=self.registry)
        self.refused = Counter("tradestack_gateway_admission_refused_total", "requests refused with 429",
                               ["reason"], registry=self.registry)
        self.db_unavailable = Counter("tradestack_gateway_database_unavailable_total",
                                      "requests answered 503 because the database was unreachable",
                                      registry=self.registry)
        self.orders = Gauge("tradestack_orders", "orders in the system of record by state", ["state"],
                            registry=self.registry)
        self.parked = Gauge("tradestack_gateway_parked_orders", "new orders waiting now for a writable database "
                            "leader", registry=self.registry)
        self.parked_total = Counter("tradestack_gateway_orders_parked_total", "new orders that waited for a "
                                    "writable database leader", registry=self.registry)
        self.database_back = Gauge("tradestack_gateway_database_back_timestamp_seconds", "when the database "
                                   "last answered again after being away (epoch seconds; 0: not since the start)",
                                   registry=self.registry)
        # quarter seconds up to the longest an order may be parked: the drills judge the 99th percentile against
        # the time without a leader plus one second, and read it as the bound of its bucket
        # what the stack's observed peak is read from (infra/monitoring/rules): orders offered, refused ones too
        # (demand, not what was carried), by origin so the toolkit's own load is left out. Sessions are counted by
        # the sites' load balancers, where clients' connections end (haproxy.cfg.j2): a gateway sees only theirs.
        self.orders_received = Counter("tradestack_gateway_orders_received_total", "new orders received (POST "
                                       "/v1/orders, whatever the answer), by origin", ["origin"],
                                       registry=self.registry)
        for origin in ORIGINS:
            self.orders_received.labels(origin)
        self.parked_wait = Histogram("tradestack_gateway_parked_wait_seconds", "how long a parked order waited "
                                     "before its commit", buckets=(*(k / 4 for k in range(1, 33)), 10),
                                     registry=self.registry)


class AdmissionMiddleware:
    """Pure ASGI: counts every request, refuses /v1 requests beyond the admission limits."""

    def __init__(self, app: Any, admission: AdmissionControl, metrics: Metrics):
        self.app, self.admission, self.metrics = app, admission, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        route, status, start = _route(path), [500], time.perf_counter()

        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        guarded = path.startswith("/v1/")
        if guarded:
            if method == "POST" and route == "/v1/orders":
                self.metrics.orders_received.labels(origin_of(scope.get("headers", []))).inc()
        refusal = self.admission.enter(method == "POST" and route == "/v1/orders") if guarded else None
        try:
            if refusal is not None:
                self.metrics.refused.labels(refusal.reason).inc()
                body = ErrorBody(error="too many requests", detail=refusal.message,
                                 retry_after_s=refusal.retry_after_s)
                await JSONResponse(body.model_dump(exclude_none=True), status_code=429,
                                   headers={"Retry-After": str(refusal.retry_after_s)})(scope, receive, recording_send)
                return
            try:
                await self.app(scope, receive, recording_send)
            finally:
                if guarded:
                    self.admission.leave()
        finally:
            self.metrics.requests.labels(method, route, str(status[0])).inc()
            self.metrics.latency.labels(route, str(status[0])).observe(time.perf_counter() - start)


class Gateway:
    """State shared by the handlers of one gateway instance."""

    def __init__(self, config: GatewayConfig):
        self.config = config
        self.metrics = Metrics()
        self.admission = AdmissionControl(config.admission)
        fast_reconnects()
        self.pool = AsyncConnectionPool(config.dsn, min_size=2, max_size=config.pool_size, open=False,
                                        timeout=config.db_timeout_s, reconnect_timeout=RECONNECT_TIMEOUT_S,
                                        kwargs={"autocommit": True, "connect_timeout": 2,
                                                "options": SESSION_OPTIONS})
        self.last_assets: OrderedDict[str, Assets] = OrderedDict()
        self.intake = OrderIntake(self.db, ORDER_COLUMNS, unavailable=(DatabaseUnavailable,), park_s=config.park_s,
                                  max_parked=config.max_parked, on_parked=self._parked,
                                  on_waited=self.metrics.parked_wait.observe)
        self.db_away_since: float | None = None  # monotonic time of the first failure since the last success
        self.db_back_at = float("-inf")  # when the database last answered again after being away

    def _parked(self, n: int) -> None:
        self.admission.park(n)
        self.metrics.parked.inc(n)
        if n > 0:
            self.metrics.parked_total.inc(n)

    def away(self) -> None:
        """The database did not answer: away since now, unless it already was."""
        if self.db_away_since is None:
            self.db_away_since = time.monotonic()

    @asynccontextmanager
    async def db(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        try:
            async with self.pool.connection() as conn:
                yield conn
        except UNAVAILABLE as exc:
            self.away()
            raise DatabaseUnavailable(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) \
                from exc
        if self.db_away_since is not None:
            self.db_away_since, self.db_back_at = None, time.monotonic()
            self.metrics.database_back.set(time.time())

    def parking(self) -> bool:
        """Whether a database away now is one that new orders wait for (away for less than `park_s`)."""
        return self.db_away_since is not None and time.monotonic() - self.db_away_since < self.config.park_s

    def remember(self, assets: Assets) -> None:
        self.last_assets[assets.account] = assets
        self.last_assets.move_to_end(assets.account)
        while len(self.last_assets) > 100_000:
            self.last_assets.popitem(last=False)


async def _fetch_order(conn: psycopg.AsyncConnection[Any], where: str, *args: Any) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {ORDER_COLUMNS} FROM orders WHERE {where}", args)
    return await cur.fetchone()


def _same_order(row: dict[str, Any], req: OrderRequest) -> bool:
    return (row["symbol"], row["side"], row["qty"], row["type"], row["limit_price"], row["session"]) == \
        (req.symbol, req.side, req.qty, req.type, req.price, req.session)


def create_app(config: GatewayConfig) -> FastAPI:
    gw = Gateway(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gw.pool.open(wait=False)  # a database that is down at start gives 503s, not a crash
        gw.intake.start()
        try:
            yield
        finally:
            await gw.intake.stop(DatabaseUnavailable("gateway stopping"))
            await gw.pool.close()

    app = FastAPI(title="tradestack order gateway", version="1", lifespan=lifespan,
                  description="Reference order gateway: idempotent order entry, explicit back-pressure, "
                              "never a wrong balance.")
    app.state.gateway = gw

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [FieldProblem(field=".".join(str(p) for p in _field_path(e["loc"])), message=e["msg"])
                    for e in exc.errors()]
        body = ErrorBody(error="invalid request", detail=f"{len(problems)} problem(s) in the request",
                         problems=problems)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # unknown paths and methods answer in the same shape as every other error
        phrase = HTTPStatus(exc.status_code).phrase.lower() if exc.status_code in HTTPStatus._value2member_map_ \
            else "error"
        body = ErrorBody(error=phrase, detail=str(exc.detail))
        return JSONResponse(body.model_dump(exclude_none=True), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(DatabaseUnavailable)
    async def _db_down(_: Request, exc: DatabaseUnavailable) -> JSONResponse:
        return _unavailable(gw, str(exc))

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(ErrorBody(error=exc.error, detail=exc.detail).model_dump(exclude_none=True),
                            status_code=exc.status)

    @app.post("/v1/orders", status_code=201, response_model=Order, operation_id="placeOrder", responses={
        201: {"description": "the order, committed", "links": ORDER_LINKS},
        200: {"model": Order, "description": "a retry: the order placed earlier with this client_order_id",
              "links": ORDER_LINKS},
        **_errors(400, 404, 409, 422, 429, 503)})
    async def place_order(req: Annotated[OrderRequest, Body()], response: Response) -> dict[str, Any]:
        """Place an order. 201 once it is committed; a retry with the same client_order_id returns it (200)."""
        row = await gw.intake.submit(NewOrder(uuid.uuid4(), req.account, req.client_order_id, req.symbol, req.side,
                                              req.qty, req.type, req.price, req.session))
        if row is not None:  # committed (the intake answers only after the commit), routers woken
            return row
        async with gw.db() as conn:  # not inserted: a retry of an order placed earlier, or an unknown account
            row = await _fetch_order(conn, "account = %s AND client_order_id = %s", req.account, req.client_order_id)
            if row is None:
                cur = await conn.execute("SELECT 1 FROM accounts WHERE account = %s", (req.account,))
                if await cur.fetchone() is None:
                    raise ApiError(404, "unknown account", f"no account {req.account!r}")
                raise DatabaseUnavailable("order vanished during an idempotent retry")  # nothing deletes orders
        if not _same_order(row, req):
            raise ApiError(409, "client_order_id reused",
                           f"order {row['id']} already has client_order_id {req.client_order_id!r} "
                           "with different parameters")
        response.status_code = 200
        return row

    @app.get("/v1/orders/{order_id}", response_model=Order, operation_id="getOrder",
             responses=_errors(404, 422, 429, 503))
    async def get_order(order_id: uuid.UUID) -> dict[str, Any]:
        """One order by its id, with its state and, when rejected or cancelled, the reason."""
        async with gw.db() as conn:
            row = await _fetch_order(conn, "id = %s", order_id)
        if row is None:
            raise ApiError(404, "unknown order", f"no order {order_id}")
        return row

    @app.get("/v1/accounts/{account}/orders/{client_order_id}", response_model=Order,
             operation_id="getOrderByClientId", responses=_errors(404, 422, 429, 503))
    async def get_order_by_client_id(
            account: AccountPath,
            client_order_id: Annotated[str, Path(pattern=CLIENT_ID_PATTERN)]) -> dict[str, Any]:
        """Find an order by the client's own id: how a client resolves an order whose answer it never got."""
        async with gw.db() as conn:
            row = await _fetch_order(conn, "account = %s AND client_order_id = %s", account, client_order_id)
        if row is None:
            raise ApiError(404, "unknown order", f"account {account!r} has no order {client_order_id!r}")
        return row

    @app.post("/v1/orders/{order_id}/cancel", response_model=Order, operation_id="cancelOrder", responses={
        202: {"model": Order, "description": "cancel requested from the venue; poll the order"},
        **_errors(404, 409, 422, 429, 503)})
    async def cancel_order(order_id: uuid.UUID, response: Response) -> dict[str, Any]:
        """Cancel an order: at once if not yet routed (200), else asked of the venue (202)."""
        async with gw.db() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"UPDATE orders SET state = 'cancelled', reason = 'cancelled by client before routing', "
                f"updated_at = now() WHERE id = %s AND state = 'accepted' RETURNING {ORDER_COLUMNS}", (order_id,))
            row = await cur.fetchone()
            if row is not None:
                return row
            await cur.execute(
                f"UPDATE orders SET cancel_requested = true, updated_at = now() WHERE id = %s "
                f"AND state IN ('routing', 'sent', 'venue_unknown', 'acked') RETURNING {ORDER_COLUMNS}", (order_id,))
            row = await cur.fetchone()
            if row is not None:
                response.status_code = 202
                return row
            row = await _fetch_order(conn, "id = %s", order_id)
        if row is None:
            raise ApiError(404, "unknown order", f"no order {order_id}")
        raise ApiError(409, "order is final", f"order {order_id} is already {row['state']}")

    @app.get("/v1/accounts/{account}/assets", response_model=Assets, operation_id="getAssets",
             responses=_errors(404, 422, 429, 503))
    async def assets(account: AccountPath) -> Assets:
        """Cash and positions. When the database is unreachable: 503 with the last value seen, marked stale."""
        try:
            async with gw.db() as conn:
                cur = conn.cursor()
                await cur.execute("SELECT cash, now() FROM accounts WHERE account = %s", (account,))
                found = await cur.fetchone()
                if found is None:
                    raise ApiError(404, "unknown account", f"no account {account!r}")
                await cur.execute("SELECT symbol, qty FROM positions WHERE account = %s AND qty <> 0 "
                                  "ORDER BY symbol", (account,))
                positions = [Position(symbol=s, qty=q) for s, q in await cur.fetchall()]
        except DatabaseUnavailable as exc:
            return _unavailable(gw, str(exc), account)  # type: ignore[return-value]
        result = Assets(account=account, cash=found[0], positions=positions, as_of=found[1], stale=False)
        gw.remember(result)
        return result

    @app.get("/healthz", responses={200: {"description": "the process is alive"}})
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok", "instance": config.instance}

    @app.get("/readyz", responses={503: {"description": "database or router unreachable"}})
    async def readyz() -> JSONResponse:
        """Readiness: the database answers and at least one router has a fresh heartbeat. During a failover
        (the database away for less than `park_s`, or back for less than that while the routers' heartbeats
        catch up) the gateway stays ready: it parks new orders until a leader accepts them."""
        checks: dict[str, Any] = {}
        try:
            # answered within READY_DB_S whatever the database does: a load balancer's check gives up after a
            # second, and a gateway whose check timed out while it parked orders was taken out of rotation
            async with asyncio.timeout(READY_DB_S), gw.db() as conn:
                cur = await conn.execute(
                    "SELECT count(*) FROM routers WHERE last_seen > now() - make_interval(secs => %s)",
                    (config.router_stale_s,))
                routers = (await cur.fetchone() or (0,))[0]
            checks["database"] = "ok"
            checks["routers"] = routers
            ready = routers > 0 or time.monotonic() - gw.db_back_at < config.park_s
            if routers == 0:
                checks["router"] = f"no router heartbeat within {config.router_stale_s:g} s" + (
                    " (the database is just back: orders are taken meanwhile)" if ready else "")
        except (DatabaseUnavailable, TimeoutError) as exc:
            gw.away()
            checks["database"] = str(exc) or f"no answer within {READY_DB_S:g} s"
            ready = gw.parking()
            if ready:
                checks["parking"] = f"new orders wait up to {config.park_s:g} s for a writable leader"
        return JSONResponse({"ready": ready, "instance": config.instance, **checks}, status_code=200 if ready else 503)

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def metrics() -> Response:
        """Prometheus metrics: requests, latencies, admissions refused, orders by state."""
        try:
            async with asyncio.timeout(0.5), gw.db() as conn:
                cur = await conn.execute("SELECT state, count(*) FROM orders GROUP BY state")
                counts = dict(await cur.fetchall())
            for state in STATES:
                gw.metrics.orders.labels(state).set(counts.get(state, 0))
        except (DatabaseUnavailable, TimeoutError):
            pass  # request metrics are still worth scraping when the database is away
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(AdmissionMiddleware, admission=gw.admission, metrics=gw.metrics)  # type: ignore[arg-type]
    return app


def _unavailable(gw: Gateway, why: str, account: str | None = None) -> JSONResponse:
    gw.metrics.db_unavailable.inc()
    retry = gw.config.admission.retry_after_s
    last = gw.last_assets.get(account) if account else None
    body = ErrorBody(error="database unavailable", detail=why, retry_after_s=retry,
                     last_known=last.model_copy(update={"stale": True}) if last else None)
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=503,
                        headers={"Retry-After": str(retry)})


async def serve(config: GatewayConfig, stop: asyncio.Event) -> None:
    from .httpserver import serve_app

    await serve_app(create_app(config), config.host, config.port, stop)
