@description('The location for the resource(s) to be deployed.')
param location string = resourceGroup().location

param existingResourceName string

param existingResourceGroup string

resource cache 'Microsoft.Cache/redis@2024-11-01' existing = {
  name: existingResourceName
  scope: resourceGroup(existingResourceGroup)
}

output connectionString string = '${cache.properties.hostName},ssl=true'

output name string = cache.name

output hostName string = cache.properties.hostName
