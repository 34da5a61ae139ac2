package qupath.ext.stimage.ui;

import javafx.scene.control.Alert;
import javafx.scene.control.Button;
import javafx.scene.control.Label;
import javafx.scene.control.TextField;
import javafx.scene.input.Clipboard;
import javafx.scene.input.ClipboardContent;
import javafx.scene.layout.HBox;
import javafx.scene.layout.Priority;
import javafx.scene.layout.VBox;
import javafx.stage.Window;
import qupath.ext.stimage.core.LocalBackend;
import qupath.ext.stimage.core.UserMessage;

/**
 * Shows a {@link UserMessage}: its title and text, and its command (such as {@code stimage serve})
 * in a selectable field with a Copy button. A message saying that the backend is not running
 * (at an address on this computer) also offers to start it: "Start local backend" opens the
 * local backend's window and starts {@code stimage serve} from the Python environment of the
 * settings. Call on the JavaFX thread.
 */
final class MessageDialogs {
    private MessageDialogs() {
    }

    static void show(Window owner, UserMessage message) {
        create(owner, message).showAndWait();
    }

    /** The message's dialog, built but not shown; {@link #show} shows it and waits. */
    static Alert create(Window owner, UserMessage message) {
        Alert.AlertType type;
        switch (message.getSeverity()) {
            case ERROR:
                type = Alert.AlertType.ERROR;
                break;
            case WARNING:
                type = Alert.AlertType.WARNING;
                break;
            default:
                type = Alert.AlertType.INFORMATION;
        }
        Alert alert = new Alert(type);
        if (owner != null) {
            alert.initOwner(owner);
        }
        alert.setTitle("STImage");
        alert.setHeaderText(message.getTitle());
        Label text = new Label(message.getText());
        text.setId("text");
        text.setWrapText(true);
        text.setMaxWidth(520);
        VBox box = new VBox(10, text);
        if (message.getCommand() != null) {
            TextField command = new TextField(message.getCommand());
            command.setId("command");
            command.setEditable(false);
            command.setStyle("-fx-font-family: monospace;");
            HBox.setHgrow(command, Priority.ALWAYS);
            Button copy = new Button("Copy");
            copy.setId("copy");
            copy.setOnAction(e -> {
                ClipboardContent c = new ClipboardContent();
                c.putString(message.getCommand());
                Clipboard.getSystemClipboard().setContent(c);
            });
            box.getChildren().add(new HBox(6, command, copy));
        }
        if (LocalBackend.saysBackendDown(message) && LocalBackend.isLocalAddress(StimagePrefs.server())) {
            Label or = new Label("Or start it from QuPath, from the Python environment set in Backend settings:");
            or.setId("startLocalText");
            or.setWrapText(true);
            or.setMaxWidth(360);
            Button start = new Button("Start local backend");
            start.setId("startLocal");
            start.setOnAction(e -> {
                alert.close();
                LocalBackendPane.showWindow(owner, true);
            });
            box.getChildren().add(new HBox(10, or, start));
        }
        alert.getDialogPane().setContent(box);
        alert.getDialogPane().setPrefWidth(580);
        alert.setResizable(true);
        return alert;
    }

    static void info(Window owner, String title, String text) {
        show(owner, new UserMessage(UserMessage.Severity.INFO, title, text, null));
    }
}
