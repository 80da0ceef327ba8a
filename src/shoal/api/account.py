"""The account side of the API: the workspace, the caller's token, and Modal's billing views of
shoal's usage meter (`modal billing`, `Workspace.billing`, `Environment.billing`)."""

from modal_proto import api_pb2

from ..control import billing
from ..control.apps import WORKSPACE_NAME
from ..control.platform import Platform
from .rpc import caller, seconds, streaming, timestamp, unary

WORKSPACE_ID = "ac-shoal"


class AccountRpcs:
    p: Platform

    @unary
    async def WorkspaceNameLookup(self, req):
        return api_pb2.WorkspaceNameLookupResponse(workspace_name=WORKSPACE_NAME, username=WORKSPACE_NAME)

    @unary
    async def TokenInfoGet(self, req):
        token_id = caller.get()
        return api_pb2.TokenInfoGetResponse(
            token_id=token_id,
            workspace_id=WORKSPACE_ID,
            workspace_name=WORKSPACE_NAME,
            created_at=timestamp(await self.p.tokens.created_at(token_id)),
        )

    @streaming
    async def WorkspaceBillingReport(self, req):
        environments = await self.p.apps.environment_names(req.environment_ids)
        items = await billing.report(
            self.p.db,
            self.p.prices(),
            seconds(req.start_timestamp),
            seconds(req.end_timestamp),
            req.resolution or "d",
            req.tag_names,
            environments,
            req.app_ids,
        )
        for item in items:
            yield api_pb2.WorkspaceBillingReportItem(
                object_id=item.app_id,
                description=item.description,
                environment_name=item.environment,
                interval=timestamp(item.interval_start),
                cost=str(item.cost),
                tags=item.tags,
                cost_by_resource={r: str(c) for r, c in item.cost_by_resource.items()},
            )

    @unary
    async def WorkspaceBillingRates(self, req):
        rates = billing.rates(self.p.prices())
        formatted = "Dollars per second (set them in $SHOAL_HOME/prices.json, per hour):\n" + "\n".join(
            f"  {resource}: {rate}" for resource, rate in rates.items()
        )
        return api_pb2.WorkspaceBillingRatesResponse(
            rates={r: str(rate) for r, rate in rates.items()}, formatted=formatted
        )

    @unary
    async def WorkspaceBillingSummary(self, req):
        summary = await billing.summary(self.p.db, self.p.prices(), seconds(req.start_timestamp))
        cost = str(summary.cost)
        return api_pb2.WorkspaceBillingSummaryResponse(
            start_timestamp=timestamp(summary.start),
            end_timestamp=timestamp(summary.end),
            metered_cost=cost,
            billed_cost=cost,  # no credits or discounts on your own machines
            metered_cost_breakdown={r: str(c) for r, c in summary.cost_by_resource.items()},
        )

    @unary
    async def EnvironmentBillingSummary(self, req):
        (environment,) = await self.p.apps.environment_names([req.environment_id])
        summary = await billing.summary(self.p.db, self.p.prices(), seconds(req.start_timestamp), environment)
        return api_pb2.EnvironmentBillingSummaryResponse(
            start_timestamp=timestamp(summary.start),
            end_timestamp=timestamp(summary.end),
            metered_cost=str(summary.cost),
            metered_cost_breakdown={r: str(c) for r, c in summary.cost_by_resource.items()},
        )
