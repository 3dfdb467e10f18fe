//! The few messages of etcd's v3 gRPC API the plugins use, written by hand with
//! `prost`'s derive macros instead of generated from etcd's `.proto` files, so the build
//! needs no `protoc`.
//!
//! Each field carries the number etcd gives it in `api/etcdserverpb/rpc.proto` and
//! `api/mvccpb/kv.proto` (the wire format knows fields by number only; names are
//! free). Fields the plugins never read are left out: protobuf decoders skip fields
//! they do not know, and leave out fields at their zero value when encoding, so a
//! message with fewer fields is still the same message on the wire.

/// The gRPC method paths (`/<package>.<service>/<method>`).
pub mod path {
    /// `KV.Range`: read a key range.
    pub const RANGE: &str = "/etcdserverpb.KV/Range";
    /// `KV.Put`: write one key.
    pub const PUT: &str = "/etcdserverpb.KV/Put";
    /// `KV.DeleteRange`: delete a key range.
    pub const DELETE_RANGE: &str = "/etcdserverpb.KV/DeleteRange";
    /// `KV.Txn`: several writes at once.
    pub const TXN: &str = "/etcdserverpb.KV/Txn";
    /// `KV.Compact`: drop history up to a revision.
    pub const COMPACT: &str = "/etcdserverpb.KV/Compact";
    /// `Watch.Watch`: a stream of watch requests and responses.
    pub const WATCH: &str = "/etcdserverpb.Watch/Watch";
    /// `Lease.LeaseGrant`.
    pub const LEASE_GRANT: &str = "/etcdserverpb.Lease/LeaseGrant";
    /// `Lease.LeaseRevoke`.
    pub const LEASE_REVOKE: &str = "/etcdserverpb.Lease/LeaseRevoke";
    /// `Lease.LeaseKeepAlive`: a stream of renewals.
    pub const LEASE_KEEP_ALIVE: &str = "/etcdserverpb.Lease/LeaseKeepAlive";
    /// `Auth.Authenticate`: user name and password for a token.
    pub const AUTHENTICATE: &str = "/etcdserverpb.Auth/Authenticate";
}

/// Every response starts with this header.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    /// The store's revision when the request was served.
    #[prost(int64, tag = "3")]
    pub revision: i64,
}

/// A response whose content the plugins do not need (put, delete, txn, compact,
/// revoke): only its header is read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ack {
    /// The header.
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

/// A key and its value (`mvccpb.KeyValue`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// The key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// The value.
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
}

/// `KV.Range`'s request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    /// The first key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// The end of the range (exclusive).
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    /// The most keys returned (0: all).
    #[prost(int64, tag = "3")]
    pub limit: i64,
    /// The revision to read at (0: the latest).
    #[prost(int64, tag = "4")]
    pub revision: i64,
}

/// `KV.Range`'s response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    /// The header.
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    /// The keys read, in key order.
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
    /// Whether more keys are in the range than `limit` let through.
    #[prost(bool, tag = "3")]
    pub more: bool,
}

/// `KV.Put`'s request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    /// The key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// The value.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    /// The lease the key is attached to (0: none).
    #[prost(int64, tag = "3")]
    pub lease: i64,
}

/// `KV.DeleteRange`'s request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteRangeRequest {
    /// The key (or first key, with `range_end`).
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// The end of the range (empty: `key` alone).
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
}

/// One operation of a transaction.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestOp {
    /// The operation.
    #[prost(oneof = "Request", tags = "2, 3")]
    pub request: Option<Request>,
}

/// `RequestOp.request`: the writes the plugins use.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Request {
    /// A put.
    #[prost(message, tag = "2")]
    RequestPut(PutRequest),
    /// A delete.
    #[prost(message, tag = "3")]
    RequestDeleteRange(DeleteRangeRequest),
}

/// `KV.Txn`'s request, without comparisons: `success` is applied unconditionally.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnRequest {
    /// The operations.
    #[prost(message, repeated, tag = "2")]
    pub success: Vec<RequestOp>,
}

/// `KV.Compact`'s request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CompactionRequest {
    /// Drop the history before this revision.
    #[prost(int64, tag = "1")]
    pub revision: i64,
    /// Wait until the compaction is applied to the backend.
    #[prost(bool, tag = "2")]
    pub physical: bool,
}

/// A message of the client's half of a watch stream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchRequest {
    /// The request.
    #[prost(oneof = "WatchRequestUnion", tags = "1")]
    pub request_union: Option<WatchRequestUnion>,
}

/// `WatchRequest.request_union`: the plugins only create watches.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum WatchRequestUnion {
    /// Start a watch.
    #[prost(message, tag = "1")]
    CreateRequest(WatchCreateRequest),
}

/// Starts a watch of a key range.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchCreateRequest {
    /// The first key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// The end of the range (exclusive).
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    /// The first revision to report (0: from now on).
    #[prost(int64, tag = "3")]
    pub start_revision: i64,
}

/// A message of etcd's half of a watch stream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchResponse {
    /// The header.
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    /// The watch was set up.
    #[prost(bool, tag = "3")]
    pub created: bool,
    /// The watch was cancelled (then see `compact_revision` and `cancel_reason`).
    #[prost(bool, tag = "4")]
    pub canceled: bool,
    /// Set when the start revision was compacted: the oldest revision left.
    #[prost(int64, tag = "5")]
    pub compact_revision: i64,
    /// Why etcd cancelled the watch.
    #[prost(string, tag = "6")]
    pub cancel_reason: String,
    /// The changes.
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<Event>,
}

/// `Event.type`'s DELETE (PUT is 0).
pub const EVENT_DELETE: i32 = 1;

/// One change of a watched key (`mvccpb.Event`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// 0: put, 1: delete ([`EVENT_DELETE`]).
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The key as it is after the change.
    #[prost(message, optional, tag = "2")]
    pub kv: Option<KeyValue>,
}

/// `Lease.LeaseGrant`'s request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseGrantRequest {
    /// The TTL in seconds.
    #[prost(int64, tag = "1")]
    pub ttl: i64,
}

/// `Lease.LeaseGrant`'s response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseGrantResponse {
    /// The lease's id.
    #[prost(int64, tag = "2")]
    pub id: i64,
    /// Why no lease was granted, if so.
    #[prost(string, tag = "4")]
    pub error: String,
}

/// The request of `Lease.LeaseRevoke` and `Lease.LeaseKeepAlive`: a lease id.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseRequest {
    /// The lease's id.
    #[prost(int64, tag = "1")]
    pub id: i64,
}

/// `Lease.LeaseKeepAlive`'s response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseKeepAliveResponse {
    /// The lease's id.
    #[prost(int64, tag = "2")]
    pub id: i64,
    /// The TTL left, in seconds; 0 when the lease is gone.
    #[prost(int64, tag = "3")]
    pub ttl: i64,
}

/// `Auth.Authenticate`'s request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthenticateRequest {
    /// The user name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The password.
    #[prost(string, tag = "2")]
    pub password: String,
}

/// `Auth.Authenticate`'s response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthenticateResponse {
    /// The token to send with each request (metadata `token`).
    #[prost(string, tag = "2")]
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn field_numbers_are_etcds() {
        // Bytes as etcd's generated Go code writes them (key 1, range_end 2, limit 3).
        let request = RangeRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            limit: 1,
            revision: 0,
        };
        assert_eq!(
            request.encode_to_vec(),
            [0x0a, 1, b'a', 0x12, 1, b'b', 0x18, 1]
        );
        // A watch response: header{revision 7} (1), event{type 1, kv{key "k"}} (11),
        // and a field the plugins skip (watch_id 2 = 9).
        let wire = [
            0x0a, 2, 0x18, 7, // header: revision 7
            0x10, 9, // watch_id 9
            0x5a, 7, // events (11), 7 bytes:
            0x08, 1, 0x12, 3, 0x0a, 1, b'k', // type DELETE, kv { key "k" }
        ];
        let response = WatchResponse::decode(&wire[..]).unwrap();
        assert_eq!(response.header.unwrap().revision, 7);
        assert_eq!(response.events.len(), 1);
        assert_eq!(response.events[0].r#type, EVENT_DELETE);
        assert_eq!(response.events[0].kv.as_ref().unwrap().key, b"k");
    }
}
