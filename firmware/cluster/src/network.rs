//! openraft's network over the cluster transport.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};

use crate::rpc::{Request, Response};
use crate::transport::{Transport, TransportError};
use crate::{Member, NodeId, TypeConfig};

pub(crate) struct NetworkFactory {
    pub transport: Arc<Transport>,
    pub me: NodeId,
    /// Wait between attempts at an unreachable peer.
    pub backoff: Duration,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerLink;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerLink {
        PeerLink {
            transport: Arc::clone(&self.transport),
            me: self.me,
            target,
            addr: node.addr.clone(),
            backoff: self.backoff,
        }
    }
}

pub(crate) struct PeerLink {
    transport: Arc<Transport>,
    me: NodeId,
    target: NodeId,
    addr: String,
    backoff: Duration,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl PeerLink {
    fn failed<E: std::error::Error>(
        &self,
        action: RPCTypes,
        ttl: Duration,
        err: TransportError,
    ) -> RPCError<NodeId, Member, RaftError<NodeId, E>> {
        match err {
            TransportError::Timeout(_) => RPCError::Timeout(Timeout {
                action,
                id: self.me,
                target: self.target,
                timeout: ttl,
            }),
            TransportError::Connect(_)
            | TransportError::Handshake(_)
            | TransportError::Untrusted(_)
            | TransportError::Replaced(_)
            | TransportError::TooLarge(_) => RPCError::Unreachable(Unreachable::new(&err)),
            TransportError::Io(_) | TransportError::Protocol(_) => RPCError::Network(NetworkError::new(&err)),
        }
    }

    fn unexpected<E: std::error::Error>(&self, response: Response) -> RPCError<NodeId, Member, RaftError<NodeId, E>> {
        let err = TransportError::Protocol(format!("unexpected answer {response:?}"));
        RPCError::Network(NetworkError::new(&err))
    }

    async fn send(&self, request: Request, ttl: Duration) -> Result<Response, TransportError> {
        self.transport.call(&self.addr, Some(self.target), request, ttl).await
    }
}

impl RaftNetwork<TypeConfig> for PeerLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let ttl = option.hard_ttl();
        let entries = rpc.entries.len() as u64;
        match self.send(Request::AppendEntries(rpc), ttl).await {
            // openraft retries with fewer entries.
            Err(TransportError::TooLarge(_)) if entries > 1 => Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(entries / 2),
            )),
            Ok(Response::AppendEntries(Ok(answer))) => Ok(answer),
            Ok(Response::AppendEntries(Err(e))) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(other) => Err(self.unexpected(other)),
            Err(e) => Err(self.failed(RPCTypes::AppendEntries, ttl, e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let ttl = option.hard_ttl();
        match self.send(Request::InstallSnapshot(rpc), ttl).await {
            Ok(Response::InstallSnapshot(Ok(answer))) => Ok(answer),
            Ok(Response::InstallSnapshot(Err(e))) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(other) => Err(self.unexpected(other)),
            Err(e) => Err(self.failed(RPCTypes::InstallSnapshot, ttl, e)),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        let ttl = option.hard_ttl();
        match self.send(Request::Vote(rpc), ttl).await {
            Ok(Response::Vote(Ok(answer))) => Ok(answer),
            Ok(Response::Vote(Err(e))) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(other) => Err(self.unexpected(other)),
            Err(e) => Err(self.failed(RPCTypes::Vote, ttl, e)),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.backoff))
    }
}
