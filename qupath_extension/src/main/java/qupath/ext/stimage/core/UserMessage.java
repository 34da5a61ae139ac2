package qupath.ext.stimage.core;

import java.util.Objects;

/**
 * What a dialog (or a script's log) shows the user about a problem: a title, one or two
 * sentences saying what was wrong and what to do, and optionally a command to copy (such as the
 * one that starts the backend). Never a stack trace.
 */
public final class UserMessage {
    /** How serious the message is. */
    public enum Severity {
        /** The run failed. */
        ERROR,
        /** The run did not happen or did less than asked, for a reason the user can fix. */
        WARNING,
        /** For information (e.g. cancelled). */
        INFO
    }

    private final Severity severity;
    private final String title;
    private final String text;
    private final String command;

    /**
     * @param severity how serious
     * @param title short title (the dialog's title)
     * @param text what was wrong and what to do
     * @param command a command to copy, or null
     */
    public UserMessage(Severity severity, String title, String text, String command) {
        this.severity = Objects.requireNonNull(severity, "severity");
        this.title = Objects.requireNonNull(title, "title");
        this.text = Objects.requireNonNull(text, "text");
        this.command = command;
    }

    /** @return how serious */
    public Severity getSeverity() {
        return severity;
    }

    /** @return the title */
    public String getTitle() {
        return title;
    }

    /** @return the text */
    public String getText() {
        return text;
    }

    /** @return the command to copy, or null */
    public String getCommand() {
        return command;
    }

    /** @return title, text and command as one paragraph (for logs and scripts) */
    public String toPlainText() {
        return title + ": " + text + (command == null ? "" : " Command: " + command);
    }

    @Override
    public String toString() {
        return severity + " " + toPlainText();
    }
}
