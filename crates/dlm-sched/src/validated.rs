//! Deserialisation that runs the constructors' checks: a config file cannot build a value its
//! constructor would refuse.

/// Implements `Serialize` and `Deserialize` for a type whose derives carry
/// `#[serde(remote = "Self")]` (so serde writes them as inherent functions), with `Deserialize`
/// calling the type's `fn validate(&self) -> Result<(), E>` (with `E: Display`) on the value it
/// read and failing with that message. Use it for every config type whose fields have a domain.
#[macro_export]
macro_rules! serde_validated {
    ($type:ty) => {
        impl ::serde::Serialize for $type {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                <$type>::serialize(self, serializer)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $type {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                let value = <$type>::deserialize(deserializer)?;
                value.validate().map_err(::serde::de::Error::custom)?;
                Ok(value)
            }
        }
    };
}
