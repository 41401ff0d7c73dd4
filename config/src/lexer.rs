//! Splitting the text into tokens, with the lexical rules of xl.cfg (Xen's
//! libxlu): `#` comments, names, decimal or `0x` numbers, quoted strings and
//! the punctuation `= ; , [ ]`. Newlines are tokens because they end
//! statements.
//!
//! A piece of text that is not a token becomes an [`TokenKind::Invalid`]
//! token carrying the message, so the parser reports it where it meets it and
//! resynchronises as for any other syntax error.

use crate::report::quoted;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::iter::Peekable;
use core::str::Chars;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// `[A-Za-z_][A-Za-z0-9_]*`: a key or a section name.
    Name(String),
    Number(u64),
    /// A quoted string, escapes already decoded.
    Text(String),
    Equals,
    Semicolon,
    Comma,
    OpenBracket,
    CloseBracket,
    Newline,
    Invalid(String),
    EndOfFile,
}

impl TokenKind {
    /// How a message names the token. Values are described, never repeated:
    /// an unquoted token secret pasted in the wrong place must not end up on
    /// the console.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            TokenKind::Name(_) => "a name",
            TokenKind::Number(_) => "a number",
            TokenKind::Text(_) => "a string",
            TokenKind::Equals => "'='",
            TokenKind::Semicolon => "';'",
            TokenKind::Comma => "','",
            TokenKind::OpenBracket => "'['",
            TokenKind::CloseBracket => "']'",
            TokenKind::Newline => "the end of the line",
            TokenKind::Invalid(_) => "invalid text",
            TokenKind::EndOfFile => "the end of the file",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) line: u32,
}

/// The tokens of `text`, always ending with [`TokenKind::EndOfFile`].
pub(crate) fn tokenize(text: &str) -> Vec<Token> {
    let mut lexer = Lexer { chars: text.chars().peekable(), line: 1 };
    let mut tokens = Vec::new();
    while let Some(character) = lexer.chars.next() {
        let line = lexer.line;
        let kind = match character {
            '\n' => {
                lexer.line = lexer.line.saturating_add(1);
                TokenKind::Newline
            }
            // Includes '\r', so files with CRLF line ends read the same.
            c if c.is_ascii_whitespace() => continue,
            '#' => {
                lexer.skip_comment();
                continue;
            }
            '=' => TokenKind::Equals,
            ';' => TokenKind::Semicolon,
            ',' => TokenKind::Comma,
            '[' => TokenKind::OpenBracket,
            ']' => TokenKind::CloseBracket,
            '"' => lexer.double_quoted(),
            '\'' => lexer.single_quoted(),
            '+' if lexer.chars.peek() == Some(&'=') => {
                lexer.chars.next();
                TokenKind::Invalid("'+=' (appending to a key) is not supported: give the whole value with '='".into())
            }
            c if c.is_ascii_digit() => lexer.number(c),
            c if c.is_ascii_alphabetic() || c == '_' => lexer.name(c),
            other => TokenKind::Invalid(format!("unexpected character {}", quoted(other.encode_utf8(&mut [0; 4])))),
        };
        tokens.push(Token { kind, line });
    }
    tokens.push(Token { kind: TokenKind::EndOfFile, line: lexer.line });
    tokens
}

const UNTERMINATED: &str = "unterminated string: a string must end on the line where it starts";

struct Lexer<'t> {
    chars: Peekable<Chars<'t>>,
    line: u32,
}

impl Lexer<'_> {
    /// Skips to the end of the line, leaving the newline to end the statement.
    fn skip_comment(&mut self) {
        while self.chars.next_if(|&c| c != '\n').is_some() {}
    }

    fn name(&mut self, first: char) -> TokenKind {
        let mut name = String::from(first);
        while let Some(c) = self.chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
            name.push(c);
        }
        TokenKind::Name(name)
    }

    /// A number runs on through letters too, so `512M` is one bad number
    /// rather than a number followed by a stray name.
    fn number(&mut self, first: char) -> TokenKind {
        let mut text = String::from(first);
        while let Some(c) = self.chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
            text.push(c);
        }
        match parse_number(&text) {
            Ok(value) => TokenKind::Number(value),
            Err(message) => TokenKind::Invalid(message.into()),
        }
    }

    /// `"..."`: backslash escapes `\\ \" \' \n \t`, as in xl. An unknown escape
    /// is an error rather than kept literally, because xl would read it
    /// differently.
    fn double_quoted(&mut self) -> TokenKind {
        let mut text = String::new();
        let mut bad_escape = None;
        loop {
            let Some(c) = self.chars.next_if(|&c| c != '\n') else {
                return TokenKind::Invalid(UNTERMINATED.into());
            };
            match c {
                '"' => break,
                '\\' => match self.chars.next_if(|&c| c != '\n') {
                    Some('\\') => text.push('\\'),
                    Some('"') => text.push('"'),
                    Some('\'') => text.push('\''),
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some(other) => {
                        bad_escape.get_or_insert(other);
                    }
                    None => return TokenKind::Invalid(UNTERMINATED.into()),
                },
                other => text.push(other),
            }
        }
        match bad_escape {
            None => TokenKind::Text(text),
            Some(escape) => TokenKind::Invalid(format!(
                "unknown escape {} in a string: use \\\\, \\\", \\', \\n or \\t",
                quoted(&format!("\\{escape}"))
            )),
        }
    }

    /// `'...'`: taken literally, with no escapes.
    fn single_quoted(&mut self) -> TokenKind {
        let mut text = String::new();
        loop {
            match self.chars.next_if(|&c| c != '\n') {
                None => return TokenKind::Invalid(UNTERMINATED.into()),
                Some('\'') => return TokenKind::Text(text),
                Some(other) => text.push(other),
            }
        }
    }
}

/// Decimal, or hexadecimal after `0x`. The messages do not repeat the text:
/// it may be a misplaced token secret.
fn parse_number(text: &str) -> Result<u64, &'static str> {
    const MALFORMED: &str =
        "malformed number: write decimal digits, or 0x and hex digits, with no unit (memory is in MiB)";
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(MALFORMED);
    }
    if radix == 10 && digits.len() > 1 && digits.starts_with('0') {
        // xl reads a leading 0 as octal; silently reading decimal instead
        // would give a different value from the same file.
        return Err("a number must not start with 0 (xl reads that as octal): drop the 0, or write hex with 0x");
    }
    u64::from_str_radix(digits, radix).map_err(|_| "number too large")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn kinds(text: &str) -> Vec<TokenKind> {
        tokenize(text).into_iter().map(|token| token.kind).collect()
    }

    fn invalid_message(text: &str) -> String {
        match kinds(text).into_iter().find_map(|kind| match kind {
            TokenKind::Invalid(message) => Some(message),
            _ => None,
        }) {
            Some(message) => message,
            None => panic!("no invalid token in {text:?}"),
        }
    }

    #[test]
    fn statement_with_comment() {
        use TokenKind::*;
        assert_eq!(
            kinds("memory = 0x200 # MiB\nname='a';"),
            vec![
                Name("memory".into()),
                Equals,
                Number(512),
                Newline,
                Name("name".into()),
                Equals,
                Text("a".into()),
                Semicolon,
                EndOfFile
            ]
        );
    }

    #[test]
    fn lines_are_counted_and_crlf_is_whitespace() {
        let tokens = tokenize("a = 1\r\n\r\nb = [\r\n 2 ]\r\n");
        let b = tokens.iter().find(|t| t.kind == TokenKind::Name("b".into())).unwrap();
        assert_eq!(b.line, 3);
        let two = tokens.iter().find(|t| t.kind == TokenKind::Number(2)).unwrap();
        assert_eq!(two.line, 4);
    }

    #[test]
    fn hash_inside_a_string_is_not_a_comment() {
        assert_eq!(kinds("'a#b'")[0], TokenKind::Text("a#b".into()));
        assert_eq!(kinds("\"a#b\"")[0], TokenKind::Text("a#b".into()));
    }

    #[test]
    fn double_quoted_escapes() {
        assert_eq!(kinds(r#""a\\b\"c\'d\ne\tf""#)[0], TokenKind::Text("a\\b\"c'd\ne\tf".into()));
    }

    #[test]
    fn single_quoted_strings_are_literal() {
        assert_eq!(kinds(r"'a\nb'")[0], TokenKind::Text("a\\nb".into()));
        assert_eq!(kinds("'say \"hi\"'")[0], TokenKind::Text("say \"hi\"".into()));
    }

    #[test]
    fn unknown_escape_is_an_error_naming_it() {
        assert!(invalid_message(r#""a\qb""#).contains("unknown escape '\\\\q'"));
    }

    #[test]
    fn unterminated_strings_stop_at_the_end_of_the_line() {
        use TokenKind::*;
        for text in ["x = \"abc\ny = 1", "x = 'abc\ny = 1", "x = \"abc\\\ny = 1"] {
            let kinds = kinds(text);
            assert_eq!(kinds[2], Invalid(UNTERMINATED.into()), "{text:?}");
            assert_eq!(kinds[3], Newline, "{text:?}");
            assert_eq!(kinds[4], Name("y".into()), "{text:?}");
        }
        assert_eq!(kinds("'abc"), vec![Invalid(UNTERMINATED.into()), EndOfFile]);
    }

    #[test]
    fn numbers() {
        assert_eq!(kinds("0")[0], TokenKind::Number(0));
        assert_eq!(kinds("1048576")[0], TokenKind::Number(1_048_576));
        assert_eq!(kinds("0xFFff")[0], TokenKind::Number(0xffff));
        assert_eq!(kinds("18446744073709551615")[0], TokenKind::Number(u64::MAX));
        assert!(invalid_message("18446744073709551616").contains("too large"));
        assert!(invalid_message("512M").contains("malformed number"));
        assert!(invalid_message("0x").contains("malformed number"));
        assert!(invalid_message("0x1g").contains("malformed number"));
        assert!(invalid_message("010").contains("octal"));
    }

    #[test]
    fn stray_characters_are_named() {
        assert_eq!(invalid_message("a = $"), "unexpected character '$'");
        assert_eq!(invalid_message("a = -1"), "unexpected character '-'");
        assert!(invalid_message("a += 1").contains("'+='"));
    }
}
