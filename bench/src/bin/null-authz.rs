//! A null ext_authz service for benchmarks: allows every `Check` at once, on
//! the same tonic stack as gatehouse-authz. It is the cost floor of the
//! side call, the baseline the real service is held to.
//!
//! `NULL_AUTHZ_ADDR` (default `127.0.0.1:0`) is where it listens; it prints
//! the bound address as its first line.

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use tonic::{Request, Response, Status};

#[derive(Debug)]
struct NullAuthz;

#[tonic::async_trait]
impl Authorization for NullAuthz {
    async fn check(
        &self,
        _request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(CheckResponse {
            status: Some(rpc::Status {
                code: rpc::Code::Ok.into(),
                ..rpc::Status::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
            ..CheckResponse::default()
        }))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("NULL_AUTHZ_ADDR").unwrap_or_else(|_| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("{}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(AuthorizationServer::new(NullAuthz))
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await?;
    Ok(())
}
