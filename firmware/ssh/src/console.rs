//! What `admin` gets on a session channel: the MMP prompt (shell) or one command (exec). Both
//! parse with sb-admin and run the command as every other front end does (appliance commands in
//! the front end, the rest through [`Admin::execute`]), so the text is the console's. Secrets a
//! command needs (`admin passwd`, `xmpp callbridge add-secret`) are asked like the console asks
//! them: at a prompt, nothing echoed; for exec, from the lines on standard input, as `mmp` does.

use crate::line_editor::{Key, LineEditor, crlf};
use russh::ChannelMsg;
use russh::server::Msg;
use sb_admin::{Admin, Command, HostnameCommand, Reply, Secret, SecretPrompt};
use sb_logging::FollowEvent;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Lines `syslog follow` may have queued for a slow client before the logger waits.
const FOLLOW_QUEUE: usize = 256;
/// How often the thread reading the log notices that the session stopped following.
const FOLLOW_POLL: Duration = Duration::from_millis(250);
const CTRL_C: u8 = 0x03;

/// What woke a session that follows the log.
enum FollowInput {
    Line(Option<String>),
    Channel(Option<ChannelMsg>),
}

/// What one read of the client's input gave.
enum Input {
    Line(String),
    /// Ctrl-C at the prompt.
    Interrupt,
    /// The client closed its input (or the channel).
    End,
}

pub struct Console {
    admin: Arc<Admin>,
    channel: russh::Channel<Msg>,
    /// A pty was requested: the client sends raw keys, so echo and line editing are ours.
    pty: bool,
    pending: VecDeque<u8>,
    input_closed: bool,
    editor: LineEditor,
}

impl Console {
    pub fn new(admin: Arc<Admin>, channel: russh::Channel<Msg>, pty: bool) -> Console {
        Console {
            admin,
            channel,
            pty,
            pending: VecDeque::new(),
            input_closed: false,
            editor: LineEditor::new(),
        }
    }

    /// The MMP prompt until `exit`, Ctrl-D or the client going away.
    pub async fn shell(mut self, peer: std::net::SocketAddr) {
        log::info!("ssh: admin from {peer}: MMP prompt");
        self.write("Switchboard MMP. 'help' lists the commands, 'exit' leaves.\n")
            .await;
        loop {
            let hostname = self.hostname().await;
            if !self.write(&format!("{hostname}> ")).await {
                break;
            }
            let line = match self.read_line(true).await {
                Input::Line(line) => line,
                Input::Interrupt => continue,
                Input::End => {
                    self.write("\n").await;
                    break;
                }
            };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if matches!(line, "exit" | "quit" | "logout") {
                break;
            }
            let reply = self.run_line(line).await;
            if !reply.text.is_empty() && !self.write(&format!("{}\n", reply.text)).await {
                break;
            }
        }
        log::info!("ssh: admin from {peer}: MMP prompt closed");
        self.finish(0).await;
    }

    /// One command line; exit status 0 unless the reply is a FAILURE.
    pub async fn exec(mut self, peer: std::net::SocketAddr, line: String) {
        log::info!("ssh: admin from {peer}: exec '{line}'");
        let reply = self.run_line(line.trim()).await;
        if !reply.text.is_empty() {
            self.write(&format!("{}\n", reply.text)).await;
        }
        self.finish(if reply.ok { 0 } else { 1 }).await;
    }

    async fn finish(self, status: u32) {
        let _ = self.channel.exit_status(status).await;
        let _ = self.channel.eof().await;
        let _ = self.channel.close().await;
    }

    async fn hostname(&self) -> String {
        let reply = execute(&self.admin, Command::Hostname(HostnameCommand::Show)).await;
        if reply.ok { reply.text } else { "mmp".to_owned() }
    }

    async fn run_line(&mut self, line: &str) -> Reply {
        let command = match sb_admin::parse(line) {
            Ok(command) => command,
            Err(err) => return Reply::from(err),
        };
        if command.is_streaming() {
            return self.follow(&command).await;
        }
        let command = match command.secret_request() {
            None => command,
            Some(request) => match self.secret(request).await {
                Ok(secret) => command.with_secret(secret),
                Err(reason) => return Reply::failure(reason),
            },
        };
        execute(&self.admin, command).await
    }

    /// `syslog follow`: recent lines, then new ones as they are logged, until Ctrl-C (with a
    /// pty), the client closing the channel, or the logger going away. Without a pty the
    /// client's end of input does not stop it (`ssh node 'syslog follow' </dev/null` follows,
    /// as `tail -f` does); ending the ssh client does.
    async fn follow(&mut self, command: &Command) -> Reply {
        let (admin, command) = (Arc::clone(&self.admin), command.clone());
        let mut follower = match tokio::task::spawn_blocking(move || admin.follow(&command)).await {
            Ok(Ok(follower)) => follower,
            Ok(Err(reply)) => return reply,
            Err(e) => return Reply::failure(format!("syslog follow: {e}")),
        };
        // The history first, so an interrupt typed ahead still shows it.
        while let Some(line) = follower.try_recv() {
            if !self.write(&format!("{line}\n")).await {
                return Reply::failure("the session closed");
            }
        }
        // The follower blocks: a blocking thread hands its lines over until this session
        // drops the receiver (it notices within one poll interval).
        let (lines, mut received) = tokio::sync::mpsc::channel::<String>(FOLLOW_QUEUE);
        let pump = tokio::task::spawn_blocking(move || {
            loop {
                match follower.recv_timeout(FOLLOW_POLL) {
                    FollowEvent::Line(line) => {
                        if lines.blocking_send(line).is_err() {
                            return;
                        }
                    }
                    FollowEvent::Timeout if lines.is_closed() => return,
                    FollowEvent::Timeout => {}
                    FollowEvent::Closed => return,
                }
            }
        });
        let mut reply = Reply {
            ok: true,
            text: String::new(),
        };
        loop {
            // Ctrl-C typed ahead of the command, or with the last input.
            if self.pty
                && let Some(at) = self.pending.iter().position(|&byte| byte == CTRL_C)
            {
                // What was typed up to the interrupt is dropped, as a terminal's line is;
                // what follows it is the next command.
                self.pending.drain(..=at);
                self.write("^C\n").await;
                break;
            }
            let event = tokio::select! {
                line = received.recv() => FollowInput::Line(line),
                message = self.channel.wait() => FollowInput::Channel(message),
            };
            match event {
                FollowInput::Line(Some(line)) => {
                    if !self.write(&format!("{line}\n")).await {
                        break;
                    }
                }
                FollowInput::Line(None) => {
                    reply = Reply::failure("the log ended (the daemon is stopping)");
                    break;
                }
                FollowInput::Channel(Some(ChannelMsg::Data { data })) => {
                    // Without a pty the input is not ours to act on while following.
                    if self.pty {
                        self.pending.extend(data.iter().copied());
                    }
                }
                FollowInput::Channel(Some(ChannelMsg::Eof)) => {
                    self.input_closed = true;
                    if self.pty {
                        break;
                    }
                }
                FollowInput::Channel(Some(ChannelMsg::Close) | None) => {
                    self.input_closed = true;
                    break;
                }
                FollowInput::Channel(Some(_)) => {}
            }
        }
        drop(received);
        let _ = pump.await;
        reply
    }

    /// The secret, asked twice when the command wants a confirmation (as mmp asks it).
    async fn secret(&mut self, request: SecretPrompt) -> Result<Secret, String> {
        let what = request.prompt.strip_prefix("Enter ").unwrap_or(request.prompt);
        let first = self.secret_line(request.prompt, what).await?;
        if let Some(confirm) = request.confirm {
            let second = self.secret_line(confirm, what).await?;
            if first != second {
                return Err(format!("{what}s do not match"));
            }
        }
        Ok(Secret::new(first))
    }

    async fn secret_line(&mut self, prompt: &str, what: &str) -> Result<String, String> {
        if self.pty {
            self.write(&format!("{prompt}: ")).await;
        }
        match self.read_line(false).await {
            Input::Line(line) => Ok(line),
            Input::Interrupt => Err(format!("no {what} given (interrupted)")),
            Input::End => Err(format!("no {what} given on standard input")),
        }
    }

    /// Send text; false when the client is gone.
    async fn write(&self, text: &str) -> bool {
        let bytes = if self.pty { crlf(text) } else { text.as_bytes().to_vec() };
        self.channel.data_bytes(bytes).await.is_ok()
    }

    async fn next_byte(&mut self) -> Option<u8> {
        loop {
            if let Some(byte) = self.pending.pop_front() {
                return Some(byte);
            }
            if self.input_closed {
                return None;
            }
            match self.channel.wait().await {
                Some(ChannelMsg::Data { data }) => self.pending.extend(data.iter().copied()),
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => self.input_closed = true,
                Some(_) => {}
            }
        }
    }

    /// A line: with a pty through the line editor (echoing unless a secret), without one as
    /// the client's own terminal already edited it.
    async fn read_line(&mut self, echo: bool) -> Input {
        if !self.pty {
            let mut line = Vec::new();
            loop {
                match self.next_byte().await {
                    Some(b'\n') => break,
                    Some(byte) if line.len() < crate::line_editor::MAX_LINE_BYTES => line.push(byte),
                    Some(_) => {}
                    None if line.is_empty() => return Input::End,
                    None => break,
                }
            }
            let text = String::from_utf8_lossy(&line);
            return Input::Line(text.strip_suffix('\r').unwrap_or(&text).to_owned());
        }
        loop {
            let Some(byte) = self.next_byte().await else {
                return Input::End;
            };
            match self.editor.key(byte, echo) {
                Key::Echo(bytes) => {
                    if !bytes.is_empty() && self.channel.data_bytes(bytes).await.is_err() {
                        return Input::End;
                    }
                }
                Key::Line(line) => {
                    self.write("\n").await;
                    return Input::Line(line);
                }
                Key::Interrupt => {
                    self.write("^C\n").await;
                    return Input::Interrupt;
                }
                Key::EndOfInput => return Input::End,
            }
        }
    }
}

/// Run a command as the console does, on a blocking thread (`execute` waits for the daemon to
/// have applied the change); appliance commands run here as they would in `mmp`.
pub async fn execute(admin: &Arc<Admin>, command: Command) -> Reply {
    let admin = Arc::clone(admin);
    let ran = tokio::task::spawn_blocking(move || {
        if command.runs_in_front_end() {
            sb_admin::appliance::execute_in_front_end_in(admin.dir(), command)
        } else {
            admin.execute(command)
        }
    })
    .await;
    ran.unwrap_or_else(|err| Reply::failure(format!("the command did not finish: {err}")))
}
