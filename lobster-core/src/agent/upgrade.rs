//! Upgrading methods (`exec.start`, later `files.put`/`files.get`): one
//! request on a fresh authenticated connection, one reply line within the
//! usual call bound, then the raw connection for
//! [`stream`](lobster_agent_proto::stream) frames.

use lobster_agent_proto::{Method, ReplyBody};

use super::conn::Upgraded;
use super::{sanitize_for_terminal, Agent, AgentError};

impl Agent {
    /// Sends `M` on a connection of its own and, once the agent answers
    /// `ok`, returns its result and the connection, switched to frames.
    pub(crate) async fn upgrade<M: Method>(
        &self,
        params: &M::Params,
    ) -> Result<(M::Output, Upgraded), AgentError> {
        let bound = self.timeouts.connect + self.timeouts.call;
        let attempt = async {
            let (mut conn, _) = self.open(self.rpc).await?;
            let id = conn.send::<M>(params).await?;
            let (body, upgraded) = conn.read_line_and_rest(id, M::NAME).await?;
            match body {
                ReplyBody::Ok(value) => {
                    let output =
                        serde_json::from_value(value).map_err(|e| AgentError::Protocol {
                            addr: upgraded.addr,
                            detail: sanitize_for_terminal(&format!(
                                "{}: unexpected result: {e}",
                                M::NAME
                            )),
                        })?;
                    Ok((output, upgraded))
                }
                ReplyBody::Error(e) => Err(AgentError::Remote {
                    method: M::NAME,
                    code: e.code,
                    message: sanitize_for_terminal(&e.message),
                }),
                ReplyBody::Event(_) => Err(AgentError::Protocol {
                    addr: upgraded.addr,
                    detail: format!("{} answered with a stream event", M::NAME),
                }),
            }
        };
        tokio::time::timeout(bound, attempt)
            .await
            .unwrap_or(Err(AgentError::Timeout {
                addr: self.rpc,
                method: M::NAME,
                after: bound,
            }))
    }
}
