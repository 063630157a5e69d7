; Inno Setup recipe for Hearth on Windows: a per-user install (no administrator rights), a Start
; menu entry, an optional desktop icon and an uninstaller (Settings > Apps). It packs the
; PyInstaller folder that `python packaging/build.py` leaves in dist\Hearth.
;
; Build:  iscc /DAppVersion=0.1.0 /DBackend=cpu packaging\windows\hearth.iss
; Output: dist\hearth-<version>-windows-x64-<backend>-setup.exe
; Chats, models and settings live in %LOCALAPPDATA%\Hearth and are kept on uninstall.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef Backend
  #define Backend "cpu"
#endif

[Setup]
AppId={{6F1C5D1E-7A43-4B8E-9E0B-3A1D2C4B5E6F}
AppName=Hearth
AppVersion={#AppVersion}
AppPublisher=The Hearth developers
AppPublisherURL=https://github.com/hearth-app/hearth
DefaultDirName={localappdata}\Programs\Hearth
DefaultGroupName=Hearth
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=hearth-{#AppVersion}-windows-x64-{#Backend}-setup
SetupIconFile=..\..\resources\icons\hearth.ico
UninstallDisplayIcon={app}\Hearth.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
LicenseFile=..\..\LICENSE

[Tasks]
Name: "desktopicon"; Description: "Create a desktop icon"; GroupDescription: "Additional icons:"; Flags: unchecked

[Files]
Source: "..\..\dist\Hearth\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\Hearth"; Filename: "{app}\Hearth.exe"
Name: "{autodesktop}\Hearth"; Filename: "{app}\Hearth.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\Hearth.exe"; Description: "Start Hearth"; Flags: nowait postinstall skipifsilent
