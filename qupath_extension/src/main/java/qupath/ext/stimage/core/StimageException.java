package qupath.ext.stimage.core;

import java.util.Objects;

/**
 * A problem the user can fix (no pixel size, nothing selected, not an RGB image...), carrying
 * the {@link UserMessage} to show. Thrown by the extension's own checks; the backend's errors
 * arrive as {@link qupath.ext.stimage.client.ServerException} and are turned into messages by
 * {@link UserMessages}.
 */
public class StimageException extends Exception {
    private static final long serialVersionUID = 1L;

    private final transient UserMessage userMessage;

    /**
     * @param userMessage what to show
     */
    public StimageException(UserMessage userMessage) {
        super(Objects.requireNonNull(userMessage, "userMessage").toPlainText());
        this.userMessage = userMessage;
    }

    /**
     * @param title the title
     * @param text what was wrong and what to do
     */
    public StimageException(String title, String text) {
        this(new UserMessage(UserMessage.Severity.WARNING, title, text, null));
    }

    /** @return the message to show */
    public UserMessage getUserMessage() {
        return userMessage;
    }
}
