"""Transaction per request, committed before the response is sent."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from structum_lab.plugins.database import (
    CommitOutcomeUnknownError,
    DatabaseUnavailableError,
    IntegrityError,
    SerializationError,
)

from ._state import SCOPE_KEY, RequestTransactions, logger

__all__ = ["TransactionMiddleware"]


def _commit_failed_response(exc: BaseException) -> JSONResponse:
    # The driver's message stays in the log: it can quote the rows of other users.
    if isinstance(exc, (IntegrityError, SerializationError)):
        return JSONResponse(
            {"detail": "the request conflicted with other data; nothing was saved, try again"},
            status_code=409,
        )
    if isinstance(exc, CommitOutcomeUnknownError):
        return JSONResponse(
            {"detail": "the database became unavailable while saving; the outcome is unknown"},
            status_code=503,
        )
    if isinstance(exc, DatabaseUnavailableError):  # lost before COMMIT: the server rolled back
        return JSONResponse(
            {"detail": "the database became unavailable; nothing was saved, try again"},
            status_code=503,
        )
    return JSONResponse(
        {"detail": "the changes could not be saved; nothing was saved"}, status_code=500
    )


class TransactionMiddleware:
    """Finish each request's transactions when the response status is known, before sending it.

    The dependencies :func:`transaction` and :func:`async_transaction` open the transactions;
    this middleware watches the response the application sends and, at its first message
    (``http.response.start``, which carries the status):

    - status below 400: COMMIT, then let the response through;
    - status 400 or above: ROLLBACK, then let the response through;
    - the COMMIT fails: the application's response is replaced by 409 (integrity or
      serialization failure), 503 (database lost; the body says whether the outcome is unknown,
      for a connection lost during COMMIT) or 500, so a client never reads a success for data
      that was not saved;
    - the application raises instead of answering: ROLLBACK, and the exception goes on to the
      server error handler.

    A dependency with ``yield`` cannot do this by itself: FastAPI 0.118 and later run its exit
    code after the response has been sent, and where it runs earlier (0.106-0.117,
    ``Depends(scope="function")``) it does not know the response status. Add it once:
    ``app.add_middleware(TransactionMiddleware)``. Requests that use no transaction dependency
    pass through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        transactions = RequestTransactions()
        scope[SCOPE_KEY] = transactions
        replaced = False

        async def send_after_commit(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the application's response was replaced; drop the rest of it
            if message["type"] == "http.response.start" and not transactions.response_started:
                transactions.response_started = True
                if transactions.pending:
                    status = int(message["status"])
                    if status < 400:
                        try:
                            await transactions.commit_all()
                        except Exception as exc:
                            response = _commit_failed_response(exc)
                            logger.error(
                                "commit of the request transaction failed; answering %s instead "
                                "of %s",
                                response.status_code,
                                status,
                                exc_info=True,
                            )
                            replaced = True
                            await response(scope, receive, send)
                            return
                    else:
                        await transactions.rollback_all()
            await send(message)

        try:
            await self.app(scope, receive, send_after_commit)
        except BaseException as exc:
            await transactions.rollback_all(exc)
            raise
        finally:
            # Nothing is left open when the application returned without answering.
            await transactions.rollback_all()
