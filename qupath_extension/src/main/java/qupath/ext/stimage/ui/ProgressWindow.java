package qupath.ext.stimage.ui;

import javafx.application.Platform;
import javafx.geometry.Insets;
import javafx.geometry.Pos;
import javafx.scene.Scene;
import javafx.scene.control.Button;
import javafx.scene.control.Label;
import javafx.scene.control.ProgressBar;
import javafx.scene.layout.HBox;
import javafx.scene.layout.VBox;
import javafx.stage.Modality;
import javafx.stage.Stage;
import javafx.stage.StageStyle;
import javafx.stage.Window;
import qupath.ext.stimage.client.CancelToken;
import qupath.ext.stimage.core.TilePipeline;

/**
 * A small window with a progress bar, a line of text and a Cancel button. {@link #update} may be
 * called from any thread (it hands the change to the JavaFX thread, dropping updates that come
 * faster than the screen shows them); Cancel asks the run to stop through its token, and the
 * window closes when the run ends.
 */
final class ProgressWindow implements TilePipeline.Progress {
    private final Stage stage;
    private final ProgressBar bar = new ProgressBar(ProgressBar.INDETERMINATE_PROGRESS);
    private final Label label = new Label("Connecting to the backend...");
    private final CancelToken cancel;
    private volatile double pendingProgress = -1;
    private volatile String pendingText;
    private volatile boolean scheduled;

    ProgressWindow(Window owner, String title, CancelToken cancel) {
        this.cancel = cancel;
        stage = new Stage(StageStyle.UTILITY);
        if (owner != null) {
            stage.initOwner(owner);
        }
        stage.initModality(Modality.NONE);
        stage.setTitle("STImage: " + title);
        bar.setPrefWidth(420);
        label.setWrapText(true);
        label.setMaxWidth(420);
        bar.setId("progress");
        label.setId("status");
        Button cancelButton = new Button("Cancel");
        cancelButton.setId("cancel");
        cancelButton.setCancelButton(true);
        cancelButton.setOnAction(e -> {
            cancel.cancel();
            cancelButton.setDisable(true);
            label.setText("Cancelling (the request in flight stops within one batch)...");
        });
        stage.setOnCloseRequest(e -> {
            e.consume();
            cancelButton.fire();
        });
        HBox buttons = new HBox(cancelButton);
        buttons.setAlignment(Pos.CENTER_RIGHT);
        VBox root = new VBox(10, label, bar, buttons);
        root.setPadding(new Insets(12));
        stage.setScene(new Scene(root));
    }

    void show() {
        stage.show();
    }

    void close() {
        stage.close();
    }

    /** @return the window */
    Stage stage() {
        return stage;
    }

    @Override
    public void update(int done, int total, String message) {
        if (cancel.isCancelled()) {
            return;
        }
        pendingProgress = total <= 0 ? ProgressBar.INDETERMINATE_PROGRESS : (double) done / total;
        pendingText = message;
        if (!scheduled) {
            scheduled = true;
            Platform.runLater(() -> {
                scheduled = false;
                if (!cancel.isCancelled()) {
                    bar.setProgress(pendingProgress);
                    label.setText(pendingText);
                }
            });
        }
    }
}
