//! The statement grammar of xl.cfg, plus section headers:
//!
//! ```text
//! file      = { statement | header } ;
//! header    = "[" NAME "]" (NEWLINE | ";" | EOF) ;
//! statement = [ NAME "=" value ] (NEWLINE | ";" | EOF) ;
//! value     = NUMBER | STRING | "[" { NEWLINE } [ items ] "]" ;
//! items     = atom { "," { NEWLINE } atom } [ "," { NEWLINE } ] ;   (newlines allowed around atoms)
//! atom      = NUMBER | STRING ;
//! ```
//!
//! A syntax error is reported and parsing resumes at the next statement, so
//! that one typo does not hide the errors after it.

use crate::lexer::{tokenize, Token, TokenKind};
use crate::report::{quoted, Report};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Number(u64),
    Text(String),
    /// Holds only numbers and strings: the grammar has no nested lists.
    List(Vec<Value>),
}

impl Value {
    /// How a type-mismatch message names what was given.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Value::Number(_) => "a number",
            Value::Text(_) => "a string",
            Value::List(_) => "a list",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) line: u32,
    /// `None` when the value had a syntax error, which is already reported.
    /// The entry is still kept so that the key does not also count as missing.
    pub(crate) value: Option<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SectionKind {
    /// The statements before the first header. In a file without headers
    /// they are the one guest of an xl.cfg file.
    BeforeFirstHeader,
    Shim,
    Guest,
    /// Under an unknown or malformed header: one error for the header, and
    /// its keys are not checked.
    Ignored,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Section {
    pub(crate) kind: SectionKind,
    /// Line of the header (1 for [`SectionKind::BeforeFirstHeader`]).
    pub(crate) line: u32,
    pub(crate) entries: Vec<Entry>,
    pub(crate) syntax_errors: usize,
}

/// The sections of `text` in file order; the first is always
/// [`SectionKind::BeforeFirstHeader`], so the file has headers exactly when
/// there is more than one.
pub(crate) fn parse_sections(text: &str, report: &mut Report) -> Vec<Section> {
    let mut parser = Parser { tokens: tokenize(text), position: 0, sections: Vec::new(), report };
    parser.start_section(SectionKind::BeforeFirstHeader, 1);
    parser.parse_file();
    parser.sections
}

static END_OF_FILE: Token = Token { kind: TokenKind::EndOfFile, line: 0 };

struct Parser<'r> {
    tokens: Vec<Token>,
    position: usize,
    sections: Vec<Section>,
    report: &'r mut Report,
}

impl Parser<'_> {
    fn token_at(&self, position: usize) -> &Token {
        self.tokens.get(position).unwrap_or(&END_OF_FILE)
    }

    fn peek(&self) -> &TokenKind {
        &self.token_at(self.position).kind
    }

    fn line(&self) -> u32 {
        self.token_at(self.position).line
    }

    fn advance(&mut self) {
        if self.position < self.tokens.len() {
            self.position += 1;
        }
    }

    fn start_section(&mut self, kind: SectionKind, line: u32) {
        self.sections.push(Section { kind, line, entries: Vec::new(), syntax_errors: 0 });
    }

    fn syntax_error(&mut self, line: u32, key: Option<&str>, message: impl Into<String>) {
        self.report.error(line, key, message);
        if let Some(section) = self.sections.last_mut() {
            section.syntax_errors += 1;
        }
    }

    /// Reports the token at the current position as unexpected: an invalid
    /// token with its own message, anything else as "expected ..., found ...".
    fn unexpected(&mut self, key: Option<&str>, expected: &str) {
        let message = match self.peek() {
            TokenKind::Invalid(message) => message.clone(),
            other => format!("expected {expected}, found {}", other.describe()),
        };
        self.syntax_error(self.line(), key, message);
    }

    fn at_end_of_statement(&self) -> bool {
        matches!(self.peek(), TokenKind::Newline | TokenKind::Semicolon | TokenKind::EndOfFile)
    }

    fn parse_file(&mut self) {
        loop {
            match self.peek() {
                TokenKind::EndOfFile => return,
                TokenKind::Newline | TokenKind::Semicolon => self.advance(),
                TokenKind::OpenBracket => self.section_header(),
                TokenKind::Name(_) => self.assignment(),
                _ => {
                    self.unexpected(None, "KEY = VALUE or a section header like [guest]");
                    self.skip_statement();
                }
            }
        }
    }

    fn section_header(&mut self) {
        let line = self.line();
        self.advance();
        let name = match (self.peek(), &self.token_at(self.position + 1).kind) {
            (TokenKind::Name(name), TokenKind::CloseBracket) => Some(name.clone()),
            _ => None,
        };
        let Some(name) = name else {
            self.start_section(SectionKind::Ignored, line);
            self.syntax_error(line, None, "malformed section header: write [shim] or [guest] alone on a line");
            self.skip_statement();
            return;
        };
        self.advance();
        self.advance();
        let kind = match name.as_str() {
            "shim" => SectionKind::Shim,
            "guest" => SectionKind::Guest,
            _ => SectionKind::Ignored,
        };
        self.start_section(kind, line);
        if kind == SectionKind::Ignored {
            let message = format!("unknown section [{}]: expected [shim] or [guest]", quoted(&name));
            self.syntax_error(line, None, message);
        }
        if !self.at_end_of_statement() {
            self.unexpected(None, "the end of the line after the section header");
            self.skip_statement();
        }
    }

    fn assignment(&mut self) {
        let line = self.line();
        let TokenKind::Name(key) = self.peek().clone() else {
            return;
        };
        self.advance();
        if self.peek() != &TokenKind::Equals {
            // The name is not repeated: it could be a stray token secret.
            self.unexpected(None, "'=' after the name at the start of the statement");
            self.skip_statement();
            return;
        }
        self.advance();
        let mut value = self.value(&key);
        if value.is_some() && !self.at_end_of_statement() {
            self.unexpected(Some(&key), "a newline or ';' after the value");
            self.skip_statement();
            value = None;
        }
        if let Some(section) = self.sections.last_mut() {
            section.entries.push(Entry { key, line, value });
        }
    }

    /// The value after `=`; on a syntax error, reports it and skips the rest
    /// of the statement.
    fn value(&mut self, key: &str) -> Option<Value> {
        let value = match self.peek() {
            TokenKind::Number(number) => Value::Number(*number),
            TokenKind::Text(text) => Value::Text(text.clone()),
            TokenKind::OpenBracket => {
                self.advance();
                return self.list_items(key).map(Value::List);
            }
            _ => {
                self.unexpected(Some(key), "a value after '=' (a number, a 'string' or a [list])");
                self.skip_statement();
                return None;
            }
        };
        self.advance();
        Some(value)
    }

    /// The items of a list whose `[` was just read, up to and including `]`.
    fn list_items(&mut self, key: &str) -> Option<Vec<Value>> {
        let mut items = Vec::new();
        loop {
            self.skip_newlines();
            match self.peek() {
                TokenKind::CloseBracket => break,
                TokenKind::Number(number) => items.push(Value::Number(*number)),
                TokenKind::Text(text) => items.push(Value::Text(text.clone())),
                _ => {
                    self.unexpected(Some(key), "a string or a number in the list");
                    self.skip_list();
                    return None;
                }
            }
            self.advance();
            self.skip_newlines();
            match self.peek() {
                TokenKind::Comma => self.advance(),
                TokenKind::CloseBracket => break,
                _ => {
                    self.unexpected(Some(key), "',' or ']' after a list item");
                    self.skip_list();
                    return None;
                }
            }
        }
        self.advance();
        Some(items)
    }

    fn skip_newlines(&mut self) {
        while self.peek() == &TokenKind::Newline {
            self.advance();
        }
    }

    /// Skips past the end of the current statement.
    fn skip_statement(&mut self) {
        loop {
            match self.peek() {
                TokenKind::EndOfFile => return,
                TokenKind::Newline | TokenKind::Semicolon => {
                    self.advance();
                    return;
                }
                _ => self.advance(),
            }
        }
    }

    /// Skips the rest of a broken list. A list may span lines, so the end of
    /// the line does not end it; but a line that starts like a new statement
    /// does, so that a missing `]` costs one error and not the rest of the file.
    fn skip_list(&mut self) {
        loop {
            if self.at_start_of_statement() {
                return;
            }
            match self.peek() {
                TokenKind::EndOfFile => return,
                TokenKind::CloseBracket => {
                    self.advance();
                    self.skip_statement();
                    return;
                }
                _ => self.advance(),
            }
        }
    }

    /// At the start of a line, `NAME =` or `[NAME]`: neither can occur inside a list.
    fn at_start_of_statement(&self) -> bool {
        let after_newline = match self.position.checked_sub(1) {
            Some(previous) => self.token_at(previous).kind == TokenKind::Newline,
            None => true,
        };
        let kind_at = |offset: usize| &self.token_at(self.position + offset).kind;
        after_newline
            && matches!(
                (kind_at(0), kind_at(1), kind_at(2)),
                (TokenKind::Name(_), TokenKind::Equals, _)
                    | (TokenKind::OpenBracket, TokenKind::Name(_), TokenKind::CloseBracket)
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConfigError;
    use alloc::vec;

    fn parse(text: &str) -> (Vec<Section>, Vec<ConfigError>) {
        let mut report = Report::new("t.cfg");
        let sections = parse_sections(text, &mut report);
        (sections, report.errors)
    }

    fn entry(key: &str, line: u32, value: Option<Value>) -> Entry {
        Entry { key: key.into(), line, value }
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn statements_without_headers_go_before_the_first_header() {
        let (sections, errors) = parse("a = 1; b = 'x'\n\n c = [ 'p',\n 2,\n ]\nd=[]");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(sections.len(), 1);
        assert_eq!(sections[0].kind, SectionKind::BeforeFirstHeader);
        assert_eq!(
            sections[0].entries,
            vec![
                entry("a", 1, Some(Value::Number(1))),
                entry("b", 1, Some(text("x"))),
                entry("c", 3, Some(Value::List(vec![text("p"), Value::Number(2)]))),
                entry("d", 6, Some(Value::List(vec![]))),
            ]
        );
    }

    #[test]
    fn headers_start_sections() {
        let (sections, errors) = parse("# boot\n[shim]\nport = 1\n[ guest ]\nname='a'\n[guest]\n");
        assert!(errors.is_empty(), "{errors:?}");
        let shape: Vec<_> = sections.iter().map(|s| (s.kind, s.line, s.entries.len())).collect();
        assert_eq!(
            shape,
            vec![
                (SectionKind::BeforeFirstHeader, 1, 0),
                (SectionKind::Shim, 2, 1),
                (SectionKind::Guest, 4, 1),
                (SectionKind::Guest, 6, 0),
            ]
        );
    }

    #[test]
    fn unknown_and_malformed_headers_start_ignored_sections() {
        let (sections, errors) = parse("[gust]\na = 1\n[guest\nb = 2\n[]\n");
        assert_eq!(sections[1].kind, SectionKind::Ignored);
        assert_eq!(sections[2].kind, SectionKind::Ignored);
        assert_eq!(sections[3].kind, SectionKind::Ignored);
        assert_eq!(errors.len(), 3);
        assert_eq!(errors[0].line, 1);
        assert!(errors[0].message.contains("unknown section ['gust']"));
        assert_eq!(errors[1].line, 3);
        assert!(errors[1].message.contains("malformed section header"));
        assert_eq!(errors[2].line, 5);
    }

    #[test]
    fn text_after_a_header_is_an_error_but_the_section_starts() {
        let (sections, errors) = parse("[guest] name = 'a'\nmemory = 1\n");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("after the section header"));
        assert_eq!(sections[1].kind, SectionKind::Guest);
        assert_eq!(sections[1].syntax_errors, 1);
        assert_eq!(sections[1].entries, vec![entry("memory", 2, Some(Value::Number(1)))]);
    }

    #[test]
    fn errors_resynchronise_at_the_next_statement() {
        let (sections, errors) = parse("a = \nb 2\nc = 1 2; d = 'ok'\ne = $\n= 3\nf = 4");
        let lines: Vec<u32> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5]);
        assert_eq!(errors[0].key.as_deref(), Some("a"));
        assert!(errors[0].message.contains("expected a value after '='"), "{}", errors[0].message);
        assert_eq!(errors[1].key, None);
        assert!(errors[1].message.contains("expected '=' after the name"));
        assert!(errors[2].message.contains("expected a newline or ';' after the value, found a number"));
        assert_eq!(errors[3].message, "unexpected character '$'");
        assert!(errors[4].message.contains("found '='"));
        // Broken statements keep their key, with no value; `b` had no '='.
        assert_eq!(
            sections[0].entries,
            vec![
                entry("a", 1, None),
                entry("c", 3, None),
                entry("d", 3, Some(text("ok"))),
                entry("e", 4, None),
                entry("f", 6, Some(Value::Number(4))),
            ]
        );
        assert_eq!(sections[0].syntax_errors, 5);
    }

    #[test]
    fn list_errors() {
        for (list, fragment) in [
            ("[ , ]", "expected a string or a number in the list, found ','"),
            ("[ 'a' 'b' ]", "expected ',' or ']' after a list item, found a string"),
            ("[ 'a',, ]", "found ','"),
            ("[ [ 'a' ] ]", "found '['"),
            ("[ 'a', \"\\q\" ]", "unknown escape"),
        ] {
            let (sections, errors) = parse(&format!("x = {list}\ny = 1"));
            assert_eq!(errors.len(), 1, "{list}: {errors:?}");
            assert!(errors[0].message.contains(fragment), "{list}: {}", errors[0].message);
            assert_eq!(errors[0].key.as_deref(), Some("x"));
            assert_eq!(sections[0].entries.last(), Some(&entry("y", 2, Some(Value::Number(1)))), "{list}");
        }
    }

    #[test]
    fn an_unclosed_list_ends_at_the_next_statement() {
        let (sections, errors) = parse("cpuid = [ 'a',\n  'b'\nmemory = 5\n[guest]\nname = 'x'\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 3);
        assert_eq!(sections[0].entries, vec![entry("cpuid", 1, None), entry("memory", 3, Some(Value::Number(5)))]);
        assert_eq!(sections[1].entries, vec![entry("name", 5, Some(text("x")))]);

        let (sections, errors) = parse("cpuid = [ 'a',\n  'b',\n[guest]\nname = 'x'\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(sections[1].kind, SectionKind::Guest);
        assert_eq!(sections[1].entries.len(), 1);

        let (_, errors) = parse("cpuid = [ 'a'");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("found the end of the file"));
    }

    #[test]
    fn an_error_inside_a_list_skips_to_its_end() {
        let (sections, errors) = parse("x = [\n 'a',\n $,\n 'b',\n]\ny = 1\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 3);
        assert_eq!(sections[0].entries, vec![entry("x", 1, None), entry("y", 6, Some(Value::Number(1)))]);
    }

    #[test]
    fn values_are_never_repeated_in_syntax_errors() {
        let secret = "Zq8rT3vW9xY2kL5m";
        for text in [
            format!("{secret}\n"),
            format!("tokens = [ {secret} ]\n"),
            format!("tokens = [ 'a' {secret} ]\n"),
            format!("tokens = {secret}\n"),
            format!("tokens = 'a' {secret}\n"),
            format!("[guest] {secret}\n"),
            format!("tokens = [ '{secret}\n"),
            format!("9{secret}\n"),
        ] {
            let (_, errors) = parse(&text);
            assert!(!errors.is_empty(), "{text}");
            for error in errors {
                assert!(!error.message.contains(&secret[..8]), "{text}: {}", error.message);
            }
        }
    }
}
