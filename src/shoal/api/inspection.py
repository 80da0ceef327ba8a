"""What `modal function calls`, `stats`, `variants` and `metrics` and `modal app stats` ask: a
function's recent inputs, how many came in each time bucket, what happened to them and its
containers, its bound variants, its metrics over time, and the same counts for each function of
an app."""

from collections import Counter
from collections.abc import Awaitable, Callable

from grpclib import GRPCError, Status
from modal_proto import api_pb2

from ..control import metrics
from ..control.apps import App
from ..control.call_history import InputRecord, Stats
from ..control.errors import InvalidArgument
from ..control.platform import Platform
from .rpc import seconds, timestamp, unary

MAX_TAIL = 1000
MAX_FETCH = 100_000  # inputs in one range answer; the client asks again for the rest
MAX_BUCKETS = 100_000
VARIANTS_PAGE = 1000


def _input_info(r: InputRecord) -> api_pb2.FunctionCallInputInfo:
    info = api_pb2.FunctionCallInputInfo(
        enqueued_at=timestamp(r.enqueued_at),
        status=r.status,
        function_call_id=r.call_id,
        service_method_name=r.method_name,
    )
    if r.started_at:
        info.started_at.CopyFrom(timestamp(r.started_at))
        info.container_id = r.task_id
        if r.finished_at:
            info.execution_time_seconds = r.finished_at - r.started_at
    return info


def _distributions(by_name: dict[str, dict[int, float]]) -> dict[str, api_pb2.StatsPercentileDistribution]:
    """Each metric's percentiles, in the unit its name ends with: "Execution time (s)"."""
    return {
        name: api_pb2.StatsPercentileDistribution(
            unit=name.rpartition("(")[2].removesuffix(")"),
            percentiles=[api_pb2.StatsPercentile(percentile_basis_points=bp, value=v) for bp, v in values.items()],
        )
        for name, values in by_name.items()
    }


def _buckets(req: api_pb2.FunctionGetMetricsRequest | api_pb2.MetricsGetInfoRequest) -> metrics.Buckets:
    width = req.bucket_secs if req.HasField("bucket_secs") else 0
    return metrics.buckets(seconds(req.since), seconds(req.until), width)


def _app_counts(stats: Stats) -> api_pb2.AppFunctionCounts:
    failed = stats.failed + stats.timed_out
    return api_pb2.AppFunctionCounts(
        calls=api_pb2.AppCallCounts(total=stats.succeeded + failed, succeeded=stats.succeeded, failed=failed),
        containers=api_pb2.AppContainerCounts(
            container_errors=stats.containers_failed, container_active_count=stats.containers
        ),
    )


class InspectionRpcs:
    p: Platform
    _lifecycle: Callable[[App], Awaitable[api_pb2.AppLifecycle]]  # the servicer's

    async def _functions_of(self, app_id: str) -> dict[str, str]:
        """The live version's functions by name (a class's methods are its `Cls.*` function)."""
        live = await self.p.deployments.live(app_id)
        return {tag: oid for tag, oid in (live.objects if live else {}).items() if oid.startswith("fu-")}

    async def _function_ids(self, function_id: str, all_variants: bool) -> list[str]:
        await self.p.functions.app_of(function_id)  # unknown: NotFound
        return await self.p.call_history.with_variants(function_id) if all_variants else [function_id]

    @unary
    async def FunctionCallFetch(self, req):
        ids = await self._function_ids(req.function_id, req.all_variants)
        if req.HasField("range"):
            limit = min(req.range.limit or MAX_FETCH, MAX_FETCH)
            records = await self.p.call_history.inputs(ids, seconds(req.range.since), seconds(req.range.until), limit)
        else:
            count = req.tail.count or 10
            if count > MAX_TAIL:
                raise InvalidArgument(f"A tail is at most {MAX_TAIL} inputs")
            records = await self.p.call_history.inputs(ids, limit=count, newest_first=True)
        return api_pb2.FunctionCallFetchResponse(function_call_inputs=[_input_info(r) for r in records])

    @unary
    async def FunctionCallCount(self, req):
        since, until, bucket = seconds(req.since), seconds(req.until), req.bucket_secs
        if bucket <= 0 or (until - since) / bucket > MAX_BUCKETS:
            raise InvalidArgument(f"bucket_secs must be positive, with at most {MAX_BUCKETS:,} buckets in the range")
        ids = await self._function_ids(req.function_id, req.all_variants)
        counts = Counter(int((at - since) // bucket) for at in await self.p.call_history.queued_at(ids, since, until))
        return api_pb2.FunctionCallCountResponse(
            buckets=[
                api_pb2.FunctionCallCountResponse.InputBucket(bucket_start_at=timestamp(since + n * bucket), count=c)
                for n, c in sorted(counts.items())
            ]
        )

    @unary
    async def FunctionGetTimeRangeStats(self, req):
        ids = await self._function_ids(req.function_id, req.rollup)
        since, until = seconds(req.since), seconds(req.until)
        stats = await self.p.call_history.stats(ids, since, until, req.container_id)
        return api_pb2.FunctionGetTimeRangeStatsResponse(
            since=req.since,
            until=req.until,
            input_success_count=stats.succeeded,
            input_failure_count=stats.failed,
            input_timeout_count=stats.timed_out,
            input_running_at_end_count=stats.in_flight,
            input_percentile_stats=_distributions(stats.percentiles),
            container_percentile_stats=_distributions(stats.container_percentiles),
            container_started_count=stats.containers_started,
            container_error_count=stats.containers_failed,
            container_creating_at_end_count=stats.containers_starting,
            container_total_count=stats.containers,
            variant_count=len(ids) - 1,
        )

    @unary
    async def MetricsGetInfo(self, req):
        if req.target_type == req.METRICS_TARGET_TYPE_SERVER:
            raise GRPCError(Status.UNIMPLEMENTED, "shoal has no servers yet, so no server metrics")
        span = _buckets(req)
        return api_pb2.MetricsGetInfoResponse(
            groups=[
                api_pb2.MetricGroupDefinition(
                    name=g.name,
                    description=g.description,
                    metrics=[
                        api_pb2.MetricDefinition(name=s.name, unit=s.unit, description=s.description) for s in g.series
                    ],
                )
                for g in metrics.groups(req.groups)
            ],
            bucket_secs=span.width,
            bucket_count=span.count,
        )

    @unary
    async def FunctionGetMetrics(self, req):
        ids = await self._function_ids(req.function_id, req.rollup)
        span = _buckets(req)
        response = api_pb2.FunctionGetMetricsResponse(
            since=timestamp(span.start), until=timestamp(span.stop), bucket_secs=span.width
        )
        for series, values in await self.p.metrics.export(ids, span, metrics.groups(req.groups)):
            item = response.series.add(name=series.name, unit=series.unit, description=series.description)
            for n, value in enumerate(values):
                point = item.points.add(timestamp=timestamp(span.start + n * span.width))
                if value is not None:
                    point.value = value
        return response

    @unary
    async def FunctionListVariants(self, req):
        await self.p.functions.app_of(req.function_id)  # unknown: NotFound
        page = min(req.limit or VARIANTS_PAGE, VARIANTS_PAGE)
        before = (req.cursor.created_before, req.cursor.function_id) if req.HasField("cursor") else None
        variants = await self.p.functions.variants(req.function_id, page + 1, before)
        response = api_pb2.FunctionListVariantsResponse()
        for function_id, binding, _ in variants[:page]:
            info = response.infos.add(function_id=function_id, serialized_params=binding.params)
            if binding.options:
                info.function_options.ParseFromString(binding.options)
        if len(variants) > page:
            last_id, _, created_at = variants[page - 1]
            response.next_cursor.CopyFrom(api_pb2.FunctionVariantCursor(created_before=created_at, function_id=last_id))
        return response

    @unary
    async def AppGetTimeRangeStats(self, req):
        app = await self.p.apps.get(req.app_id)
        since, until = seconds(req.since), seconds(req.until)
        functions = api_pb2.AppFunctionStatsGroup()
        every_id = []
        for name, function_id in (await self._functions_of(app.app_id)).items():
            ids = await self.p.call_history.with_variants(function_id)
            every_id += ids
            counts = _app_counts(await self.p.call_history.stats(ids, since, until))
            functions.by_name[name].CopyFrom(api_pb2.AppFunctionStats(object_id=function_id, counts=counts))
        functions.total.CopyFrom(_app_counts(await self.p.call_history.stats(every_id, since, until)))
        deployed = [v for v in await self.p.deployments.history(app.app_id) if since <= v.deployed_at < until]
        return api_pb2.AppGetTimeRangeStatsResponse(
            since=req.since,
            until=req.until,
            functions=functions,
            lifecycle=await self._lifecycle(app),
            deployment_count=len(deployed) if app.state == api_pb2.APP_STATE_DEPLOYED else 0,
        )
