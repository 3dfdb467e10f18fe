//! The configuration the host hands a plugin: JSON text it parses into its own types.
//!
//! `Setup` receives the plugin type's global table (`[watchers.<type>]`), `Accept` the
//! instance's `cfg` table. A plugin declares a serde type and calls [`Config::parse`];
//! a mismatch comes back as an error that names the field, and that text is what the
//! user sees in the host's log.

use serde::de::DeserializeOwned;
use thiserror::Error;

/// A plugin configuration as the host sent it, with where it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    json: String,
    service: Option<String>,
    instance: Option<String>,
}

/// A configuration did not fit the plugin's type.
#[derive(Debug, Error)]
#[error("{}", .message)]
pub struct ConfigError {
    message: String,
    /// The dotted path of the field at fault (`.` for the whole table).
    pub field: String,
}

impl Config {
    /// A global (`Setup`) configuration.
    pub fn global(json: impl Into<String>) -> Self {
        Config {
            json: json.into(),
            service: None,
            instance: None,
        }
    }

    /// An instance (`Accept`) configuration of one service.
    pub fn instance(
        json: impl Into<String>,
        service: impl Into<String>,
        instance: impl Into<String>,
    ) -> Self {
        Config {
            json: json.into(),
            service: Some(service.into()),
            instance: Some(instance.into()),
        }
    }

    /// Parses the configuration into the plugin's own type; the error names the field.
    ///
    /// ```
    /// #[derive(Debug, serde::Deserialize)]
    /// struct Cfg { port: u16 }
    /// let err = plugin_sdk::Config::global(r#"{"port": "eighty"}"#).parse::<Cfg>().unwrap_err();
    /// assert!(err.to_string().starts_with("port: invalid type"), "{err}");
    /// ```
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let text = if self.json.trim().is_empty() {
            "{}"
        } else {
            &self.json
        };
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let mut message = inner.to_string();
            // serde_json appends "at line 1 column 42": meaningless for a TOML user.
            if let Some(cut) = message.find(" at line ") {
                message.truncate(cut);
            }
            let message = if field == "." {
                message
            } else {
                format!("{field}: {message}")
            };
            ConfigError { message, field }
        })
    }

    /// The JSON text itself.
    pub fn as_json(&self) -> &str {
        &self.json
    }

    /// The service an instance configuration belongs to (`None` for a global one).
    pub fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }

    /// The instance's name within its service (`None` for a global one).
    pub fn instance_name(&self) -> Option<&str> {
        self.instance.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[allow(dead_code)]
        name: String,
        #[serde(default)]
        #[allow(dead_code)]
        nested: Nested,
    }

    #[derive(Debug, Default, serde::Deserialize)]
    struct Nested {
        #[allow(dead_code)]
        port: u16,
    }

    #[test]
    fn errors_name_the_field() {
        let err = Config::global(r#"{"name": "a", "nested": {"port": 70000}}"#)
            .parse::<Cfg>()
            .unwrap_err();
        assert_eq!(err.field, "nested.port");
        assert!(
            err.to_string().starts_with("nested.port: invalid value"),
            "{err}"
        );
        assert!(!err.to_string().contains("line 1"), "{err}");

        let err = Config::global("{}").parse::<Cfg>().unwrap_err();
        assert_eq!(err.to_string(), "missing field `name`");

        let err = Config::global(r#"{"name": "a", "nmae": 1}"#)
            .parse::<Cfg>()
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `nmae`"), "{err}");
    }

    #[test]
    fn empty_text_is_an_empty_table() {
        #[derive(serde::Deserialize)]
        struct Empty {}
        Config::global("").parse::<Empty>().unwrap();
    }
}
