//! The Java client's `sasl.jaas.config` (a JAAS login-module entry), read for the two modules
//! whose credentials kgroup can use: Kafka's `PlainLoginModule` and `ScramLoginModule`.
//!
//! The syntax is that of a JAAS configuration file entry without its name and braces:
//! `ModuleClass Flag name="value" name=value ... ;`, values quoted with `"` and backslash
//! escapes. Java accepts exactly one module in the property; so does this parser.

use super::security::Secret;

/// The login modules whose options kgroup understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LoginModule {
    /// `org.apache.kafka.common.security.plain.PlainLoginModule` (SASL/PLAIN).
    Plain,
    /// `org.apache.kafka.common.security.scram.ScramLoginModule` (SCRAM-SHA-256 and -512).
    Scram,
}

/// What a `sasl.jaas.config` entry gives kgroup.
#[derive(Debug)]
pub(super) struct JaasLogin {
    pub(super) module: LoginModule,
    pub(super) username: String,
    pub(super) password: Secret,
}

/// Why an entry cannot be used. Never contains option values (the password is one of them).
pub(super) type JaasError = String;

/// Reads a `sasl.jaas.config` value.
pub(super) fn parse(text: &str) -> Result<JaasLogin, JaasError> {
    let mut tokens = Tokens { rest: text };
    let class = tokens.word().ok_or("expected a login module class name")?;
    let module = match class.rsplit('.').next() {
        Some("PlainLoginModule") => LoginModule::Plain,
        Some("ScramLoginModule") => LoginModule::Scram,
        _ => {
            return Err(format!(
                "login module {class} is not supported: kgroup implements PLAIN (PlainLoginModule) and SCRAM \
                 (ScramLoginModule)"
            ))
        }
    };
    let flag = tokens.word().ok_or("expected a control flag after the login module")?;
    if !["required", "requisite", "sufficient", "optional"].iter().any(|f| f.eq_ignore_ascii_case(&flag)) {
        return Err(format!("unknown control flag {flag:?}: expected required, requisite, sufficient or optional"));
    }
    let (mut username, mut password) = (None, None);
    loop {
        if tokens.semicolon() {
            break;
        }
        let name = tokens.word().ok_or("expected name=value options ending with `;`")?;
        // Only kgroup's two option names are shown: after a broken quote, the next "name" may
        // be a piece of the password.
        let shown = if matches!(name.as_str(), "username" | "password") { name.as_str() } else { "an option" };
        if !tokens.equals() {
            return Err(format!("{shown} has no `=value`"));
        }
        let value = tokens.value().ok_or_else(|| format!("{shown} has no value (or an unclosed quote)"))?;
        match name.as_str() {
            "username" => username = Some(value),
            "password" => password = Some(value),
            // Options of the module kgroup has no use for (e.g. `tokenauth`, `serviceName`).
            _ => {}
        }
    }
    if !tokens.rest.trim().is_empty() {
        return Err("more than one login module: Kafka clients take exactly one in sasl.jaas.config".to_owned());
    }
    let username = username.filter(|u| !u.is_empty()).ok_or("the login module has no username option")?;
    let password = password.ok_or("the login module has no password option")?;
    Ok(JaasLogin { module, username, password: Secret::new(password) })
}

/// A cursor over the entry: words, `=`, `;` and (quoted or bare) values.
struct Tokens<'a> {
    rest: &'a str,
}

impl Tokens<'_> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn punctuation(&mut self, c: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn semicolon(&mut self) -> bool {
        self.punctuation(';')
    }

    fn equals(&mut self) -> bool {
        self.punctuation('=')
    }

    /// A bare word: anything up to white space, `=`, `;` or `"`.
    fn word(&mut self) -> Option<String> {
        self.skip_space();
        let end =
            self.rest.find(|c: char| c.is_whitespace() || matches!(c, '=' | ';' | '"')).unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(word.to_owned())
    }

    /// A quoted string (backslash escapes the next character) or a bare word.
    fn value(&mut self) -> Option<String> {
        self.skip_space();
        let Some(quoted) = self.rest.strip_prefix('"') else { return self.word() };
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &quoted[at + 1..];
                    return Some(value);
                }
                '\\' => value.push(chars.next()?.1),
                c => value.push(c),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_modules_of_the_kafka_docs_are_read() {
        let scram = parse(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="alice-secret";"#,
        )
        .unwrap();
        assert_eq!(scram.module, LoginModule::Scram);
        assert_eq!(scram.username, "alice");
        assert_eq!(scram.password.expose(), "alice-secret");

        let plain = parse(
            "org.apache.kafka.common.security.plain.PlainLoginModule required\n    username=svc\n    password=\"p\\\"w;d\";",
        )
        .unwrap();
        assert_eq!(plain.module, LoginModule::Plain);
        assert_eq!(plain.username, "svc");
        assert_eq!(plain.password.expose(), "p\"w;d");

        let extra = parse(r#"ScramLoginModule optional tokenauth="false" username="u" password="""#).unwrap_err();
        assert!(extra.contains("`;`"), "{extra}");
        let with_extra = parse(r#"ScramLoginModule optional tokenauth="false" username="u" password="";"#).unwrap();
        assert_eq!((with_extra.username.as_str(), with_extra.password.expose()), ("u", ""));
    }

    #[test]
    fn unusable_entries_say_why_without_showing_values() {
        for (text, expected) in [
            ("", "login module class"),
            ("com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true;", "not supported"),
            ("PlainLoginModule mandatory username=\"u\" password=\"hunter2\";", "control flag"),
            ("PlainLoginModule required username \"u\";", "no `=value`"),
            ("PlainLoginModule required username=u password=\"hun\"ter2\";", "no `=value`"),
            ("PlainLoginModule required username=\"u\" password=\"hunter2;", "unclosed quote"),
            ("PlainLoginModule required password=\"hunter2\";", "no username"),
            ("PlainLoginModule required username=\"\" password=\"hunter2\";", "no username"),
            ("PlainLoginModule required username=\"u\";", "no password"),
            ("PlainLoginModule required username=u password=hunter2; ScramLoginModule required;", "more than one"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(!err.contains("ter2"), "no piece of the password: {text}: {err}");
        }
    }
}
