//! The Connect service (`proto/connect.proto`): a replica calls `Subscribe` with its hostname and
//! version, and the control plane streams [`pb::Message`]s telling it what to re-fetch. Both the
//! client ([`pb::connect_client`]) and the server ([`pb::connect_server`]) are generated.

#[allow(clippy::all, clippy::pedantic, clippy::restriction, reason = "generated code")]
pub mod pb {
    tonic::include_proto!("pomerium.zero");
}

/// The gRPC method path, for logs and for servers that route by path.
pub const SUBSCRIBE_PATH: &str = "/pomerium.zero.Connect/Subscribe";

/// How often a client sends HTTP/2 keepalive pings on the stream.
pub const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(60);

/// What a replica must do on a message from the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Re-sync the `config` bundle (the changeset version, for logs).
    ConfigUpdated(i64),
    /// Fetch the bootstrap configuration again.
    BootstrapConfigUpdated,
    /// Telemetry was asked for (not served: ignored).
    TelemetryRequest,
    /// Run the health checks now.
    RunHealthChecks,
    /// An empty message or one of a kind this build does not know: ignored.
    Unknown,
}

impl From<&pb::Message> for Event {
    fn from(message: &pb::Message) -> Self {
        use pb::message::Message as M;
        match &message.message {
            Some(M::ConfigUpdated(c)) => Self::ConfigUpdated(c.changeset_version),
            Some(M::BootstrapConfigUpdated(_)) => Self::BootstrapConfigUpdated,
            Some(M::TelemetryRequest(_)) => Self::TelemetryRequest,
            Some(M::RunHealthChecksRequest(_)) => Self::RunHealthChecks,
            None => Self::Unknown,
        }
    }
}

impl Event {
    /// The message a control plane sends for this event (`Unknown` is an empty message).
    pub fn to_message(self) -> pb::Message {
        use pb::message::Message as M;
        let message = match self {
            Self::ConfigUpdated(changeset_version) => Some(M::ConfigUpdated(pb::ConfigUpdated { changeset_version })),
            Self::BootstrapConfigUpdated => Some(M::BootstrapConfigUpdated(pb::BootstrapConfigUpdated {})),
            Self::TelemetryRequest => Some(M::TelemetryRequest(pb::TelemetryRequest::default())),
            Self::RunHealthChecks => Some(M::RunHealthChecksRequest(pb::RunHealthChecksRequest {})),
            Self::Unknown => None,
        };
        pb::Message { message }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use prost::Message as _;

    #[test]
    fn field_numbers_are_the_wire_contract() {
        // config_updated = 1 { changeset_version = 1 }: tag 0x0a, length 2, tag 0x08, varint 7.
        let bytes = Event::ConfigUpdated(7).to_message().encode_to_vec();
        assert_eq!(bytes, [0x0a, 0x02, 0x08, 0x07]);
        // bootstrap_config_updated = 2, run_health_checks_request = 5 (4 is not used).
        assert_eq!(Event::BootstrapConfigUpdated.to_message().encode_to_vec(), [0x12, 0x00]);
        assert_eq!(Event::RunHealthChecks.to_message().encode_to_vec(), [0x2a, 0x00]);
        assert_eq!(Event::TelemetryRequest.to_message().encode_to_vec(), [0x1a, 0x00]);
        let request = pb::SubscribeRequest { hostname: "h".into(), version: "v".into() }.encode_to_vec();
        assert_eq!(request, [0x0a, 0x01, b'h', 0x12, 0x01, b'v']);
    }

    #[test]
    fn events_round_trip_and_unknown_fields_are_ignored() {
        for event in
            [Event::ConfigUpdated(-3), Event::BootstrapConfigUpdated, Event::TelemetryRequest, Event::RunHealthChecks]
        {
            let decoded = pb::Message::decode(event.to_message().encode_to_vec().as_slice()).unwrap();
            assert_eq!(Event::from(&decoded), event);
        }
        // Field 4 (unknown to us) decodes to an empty message.
        let decoded = pb::Message::decode([0x22u8, 0x00].as_slice()).unwrap();
        assert_eq!(Event::from(&decoded), Event::Unknown);
    }
}
