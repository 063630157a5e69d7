"""Light and dark looks, following the system unless HEARTH_THEME says otherwise."""

from __future__ import annotations

import os
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication


@dataclass(frozen=True)
class Theme:
    dark: bool
    window: str
    sidebar: str
    base: str
    text: str
    muted: str
    accent: str
    accent_text: str
    user_bubble: str
    border: str
    code_bg: str
    error: str
    error_bg: str
    selection: str
    good: str
    warn: str


LIGHT = Theme(dark=False, window="#f7f7f8", sidebar="#efeef0", base="#ffffff", text="#1d1d1f",
              muted="#6e6e76", accent="#d4622a", accent_text="#ffffff", user_bubble="#fbe7da",
              border="#e1e0e5", code_bg="#f2f1f4", error="#b42318", error_bg="#fdecea",
              selection="#e4e3e8", good="#2f7d32", warn="#a15c00")
DARK = Theme(dark=True, window="#1d1c22", sidebar="#16151a", base="#26252c", text="#ececf1",
             muted="#9d9ca6", accent="#f08a4b", accent_text="#1d1c22", user_bubble="#3d2c24",
             border="#33323a", code_bg="#2c2b33", error="#ff8a80", error_bg="#3a2224",
             selection="#2e2d35", good="#7bd88f", warn="#f5b85c")


def system_prefers_dark() -> bool:
    choice = os.environ.get("HEARTH_THEME", "").lower()
    if choice in ("dark", "light"):
        return choice == "dark"
    hints = QGuiApplication.styleHints()
    return hints.colorScheme() == Qt.ColorScheme.Dark


def _palette(t: Theme) -> QPalette:
    p = QPalette()
    role = QPalette.ColorRole
    for r, c in ((role.Window, t.window), (role.WindowText, t.text), (role.Base, t.base),
                 (role.AlternateBase, t.sidebar), (role.Text, t.text), (role.Button, t.base),
                 (role.ButtonText, t.text), (role.Highlight, t.accent),
                 (role.HighlightedText, t.accent_text), (role.ToolTipBase, t.base),
                 (role.ToolTipText, t.text), (role.PlaceholderText, t.muted), (role.Link, t.accent),
                 (role.Mid, t.border), (role.Midlight, t.border)):
        p.setColor(r, QColor(c))
    p.setColor(QPalette.ColorGroup.Disabled, role.Text, QColor(t.muted))
    p.setColor(QPalette.ColorGroup.Disabled, role.ButtonText, QColor(t.muted))
    p.setColor(QPalette.ColorGroup.Disabled, role.WindowText, QColor(t.muted))
    return p


def stylesheet(t: Theme) -> str:
    return f"""
    QWidget {{ font-size: 10pt; }}
    QToolTip {{ color: {t.text}; background: {t.base}; border: 1px solid {t.border}; padding: 4px; }}
    #Sidebar {{ background: {t.sidebar}; border-right: 1px solid {t.border}; }}
    #SidebarTitle {{ font-size: 13pt; font-weight: 600; }}
    #SidebarFooter {{ color: {t.muted}; font-size: 8.5pt; }}
    #ConversationList {{ background: transparent; border: none; outline: none; }}
    #ConversationList::item {{ padding: 7px 8px; border-radius: 8px; margin: 1px 0; }}
    #ConversationList::item:selected {{ background: {t.selection}; color: {t.text}; }}
    #ConversationList::item:hover:!selected {{ background: {t.selection}; }}
    QLineEdit, QPlainTextEdit, QSpinBox, QDoubleSpinBox, QComboBox {{
        background: {t.base}; border: 1px solid {t.border}; border-radius: 8px; padding: 5px 8px;
        selection-background-color: {t.accent}; selection-color: {t.accent_text};
    }}
    QLineEdit:focus, QPlainTextEdit:focus, QSpinBox:focus, QDoubleSpinBox:focus {{ border-color: {t.accent}; }}
    /* Spin boxes have no arrows here (type, or scroll over them). Without a place for the hidden
       arrows, a styled spin box gives its text field no width and shows no number at all. */
    QAbstractSpinBox::up-button, QAbstractSpinBox::down-button {{ subcontrol-origin: padding; width: 0px; }}
    QComboBox::drop-down {{ border: none; width: 22px; }}
    QPushButton {{ background: {t.base}; border: 1px solid {t.border}; border-radius: 8px; padding: 6px 12px; }}
    QPushButton:hover {{ border-color: {t.muted}; }}
    QPushButton:disabled {{ color: {t.muted}; }}
    QPushButton#Primary {{ background: {t.accent}; color: {t.accent_text}; border: none; font-weight: 600; }}
    QPushButton#Primary:disabled {{ background: {t.border}; color: {t.muted}; }}
    QToolButton {{ border: none; border-radius: 6px; padding: 4px; }}
    QToolButton:hover {{ background: {t.selection}; }}
    #Header {{ background: {t.window}; border-bottom: 1px solid {t.border}; }}
    #ChatArea, #MessageColumn {{ background: {t.window}; }}
    QScrollArea {{ border: none; background: {t.window}; }}
    #Composer {{ background: {t.base}; border: 1px solid {t.border}; border-radius: 14px; }}
    #ComposerInput {{ background: transparent; border: none; padding: 4px 2px; font-size: 10.5pt; }}
    #SendButton {{ background: {t.accent}; border-radius: 16px; }}
    #SendButton:disabled {{ background: {t.border}; }}
    #UserBubble {{ background: {t.user_bubble}; border-radius: 14px; }}
    #MessageMeta {{ color: {t.muted}; font-size: 8.5pt; }}
    #ThinkingToggle {{ color: {t.muted}; border: none; background: transparent; padding: 2px 0; font-size: 9pt; }}
    #ThinkingToggle:hover {{ color: {t.text}; }}
    #ThinkingBody {{ border: none; border-left: 2px solid {t.border}; }}
    #ThinkingBody QLabel, #ThinkingBody #LongProse, #ThinkingBody #TableBlock {{ color: {t.muted}; }}
    #CodeBlock {{ background: {t.code_bg}; border-radius: 8px; }}
    #CodeView, #LongProse, #TableBlock {{ background: transparent; border: none; padding: 0; }}
    #CodeView {{ color: {t.text}; }}
    #CodeLanguage {{ color: {t.muted}; font-size: 8.5pt; }}
    QToolButton#CodeCopy {{ color: {t.muted}; font-size: 8.5pt; padding: 2px 8px; }}
    QToolButton#CodeCopy:hover {{ color: {t.text}; }}
    #MessageAuthor {{ font-weight: 600; }}
    #MessageError {{ color: {t.error}; background: {t.error_bg}; border-radius: 8px; padding: 8px 10px; }}
    #Banner {{ background: {t.error_bg}; color: {t.error}; border-radius: 10px; padding: 8px 12px; }}
    #Banner[level="info"] {{ background: {t.selection}; color: {t.text}; }}
    #EmptyTitle {{ font-size: 17pt; font-weight: 600; }}
    #EmptyText {{ color: {t.muted}; font-size: 10.5pt; }}
    #EarlierButton {{ border-radius: 14px; padding: 5px 14px; color: {t.muted}; }}
    #SuggestionButton {{ text-align: left; padding: 10px 14px; border-radius: 10px; color: {t.text}; }}
    #SettingsPanel {{ background: {t.sidebar}; border-left: 1px solid {t.border}; }}
    #SettingsPanel QLabel#SectionTitle {{ font-weight: 600; font-size: 10.5pt; padding-top: 8px; }}
    #SettingsHint {{ color: {t.muted}; font-size: 8.5pt; }}
    #PageTitle {{ font-size: 15pt; font-weight: 600; }}
    #CardTitle {{ font-weight: 600; font-size: 10.5pt; }}
    #Muted {{ color: {t.muted}; }}
    #Card {{ background: {t.base}; border: 1px solid {t.border}; border-radius: 10px; }}
    #CompareColumn {{ background: {t.base}; border: 1px solid {t.border}; border-radius: 12px; }}
    #CompareText {{ background: transparent; border: none; font-size: 10.5pt; }}
    #VoteBar QPushButton {{ padding: 6px 14px; }}
    QToolButton#OfflineSwitch {{ color: {t.muted}; padding: 2px 10px; }}
    QToolButton#OfflineSwitch:checked {{ color: {t.warn}; font-weight: 600; background: transparent; }}
    QToolButton#ServerStatus {{ color: {t.muted}; padding: 2px 10px; }}
    QToolButton#ServerStatus[on="true"] {{ color: {t.good}; }}
    QTableView#ServerLog, QListWidget#ServerOrigins {{ background: {t.base}; border: 1px solid {t.border}; border-radius: 10px; gridline-color: transparent; }}
    QTableView#ServerLog::item {{ padding: 0 4px; }}
    QTableView#ServerLog::item:selected, QListWidget#ServerOrigins::item:selected {{ background: {t.selection}; color: {t.text}; }}
    QListWidget#ServerOrigins::item {{ padding: 3px 6px; }}
    #ModelCard {{ border-radius: 10px; }}
    #ModelCard:hover {{ background: {t.selection}; }}
    #ModelCard[selected="true"] {{ background: {t.selection}; border: 1px solid {t.border}; }}
    #ModelList {{ background: transparent; border: none; outline: none; }}
    #ModelList::item {{ border-radius: 10px; margin: 2px 0; }}
    #ModelList::item:selected {{ background: {t.selection}; }}
    QLabel#Fit {{ border-radius: 8px; padding: 1px 8px; font-size: 8.5pt; font-weight: 600; }}
    QLabel#Fit[level="ok"] {{ color: {t.good}; border: 1px solid {t.good}; }}
    QLabel#Fit[level="tight"] {{ color: {t.warn}; border: 1px solid {t.warn}; }}
    QLabel#Fit[level="no"] {{ color: {t.error}; border: 1px solid {t.error}; }}
    QLabel#Fit[level="unknown"] {{ color: {t.muted}; border: 1px solid {t.border}; }}
    #ErrorText {{ color: {t.error}; }}
    QPushButton#SidebarEntry {{ border: none; background: transparent; text-align: left; padding: 6px 8px; }}
    QPushButton#SidebarEntry:hover {{ background: {t.selection}; }}
    #Chip {{ background: {t.selection}; border-radius: 10px; }}
    #ChipName {{ font-size: 9pt; }}
    QToolButton#ChipClose {{ padding: 2px; border-radius: 8px; }}
    QToolButton#ChipClose:hover {{ background: {t.border}; }}
    #SourcesTitle {{ color: {t.muted}; font-size: 8.5pt; font-weight: 600; padding: 0; margin: 0 0 2px 0; }}
    QPushButton#SourceEntry {{ border: none; background: transparent; color: {t.accent}; padding: 1px 0; margin: 0; text-align: left; }}
    QPushButton#SourceEntry:hover {{ text-decoration: underline; }}
    #DropHint {{ color: {t.muted}; border: 2px dashed {t.border}; border-radius: 12px; padding: 14px; }}
    #DropHint[active="true"] {{ border-color: {t.accent}; color: {t.text}; }}
    QTabWidget::pane {{ border: none; }}
    QTabBar::tab {{ padding: 7px 16px; border: none; color: {t.muted}; }}
    QTabBar::tab:selected {{ color: {t.text}; border-bottom: 2px solid {t.accent}; }}
    QTableWidget {{ background: {t.base}; border: 1px solid {t.border}; border-radius: 10px; gridline-color: transparent; }}
    QTableWidget::item:selected {{ background: {t.selection}; color: {t.text}; }}
    QHeaderView::section {{ background: {t.base}; color: {t.muted}; border: none; border-bottom: 1px solid {t.border}; padding: 6px; }}
    QProgressBar {{ background: {t.selection}; border: none; border-radius: 4px; }}
    QProgressBar::chunk {{ background: {t.accent}; border-radius: 4px; }}
    QStatusBar {{ background: {t.sidebar}; border-top: 1px solid {t.border}; color: {t.muted}; }}
    QStatusBar QLabel {{ color: {t.muted}; padding: 0 8px; }}
    QScrollBar:vertical {{ background: transparent; width: 10px; margin: 2px; }}
    QScrollBar::handle:vertical {{ background: {t.border}; border-radius: 4px; min-height: 30px; }}
    QScrollBar:horizontal {{ background: transparent; height: 10px; margin: 2px; }}
    QScrollBar::handle:horizontal {{ background: {t.border}; border-radius: 4px; min-width: 30px; }}
    #CodeBlock QScrollBar::handle:horizontal, #TableBlock QScrollBar::handle:horizontal {{ background: {t.muted}; }}
    QScrollBar::add-line, QScrollBar::sub-line {{ height: 0; width: 0; }}
    QScrollBar::add-page, QScrollBar::sub-page {{ background: transparent; }}
    """


def apply_theme(app: QApplication, dark: bool | None = None) -> Theme:
    theme = DARK if (system_prefers_dark() if dark is None else dark) else LIGHT
    app.setStyle("Fusion")
    app.setPalette(_palette(theme))
    font = QFont(app.font())
    font.setPointSizeF(10)
    app.setFont(font)
    app.setStyleSheet(stylesheet(theme))
    return theme
